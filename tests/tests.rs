//! The one integration-test binary of trailql (each test binary links all of DataFusion).

mod convert;
mod lake;
mod sql;
mod util;
