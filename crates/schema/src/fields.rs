//! The table of known CloudTrail fields (event versions 1.0 to 1.11).

/// How a known field is stored.
#[derive(Debug)]
pub enum Kind {
    /// A JSON string, stored as UTF-8 text.
    Str,
    /// A JSON boolean. The strings `"true"` and `"false"` are read as booleans too (the original
    /// text is kept in the unmapped column).
    Bool,
    /// An ISO-8601 timestamp string, stored as microseconds since the epoch, UTC.
    Timestamp,
    /// A free-form value stored as its exact JSON source text; never given a struct type.
    Json,
    /// A JSON object with known members.
    Struct(&'static [FieldSpec]),
    /// A JSON array of objects with known members.
    ListOfStruct(&'static [FieldSpec]),
}

/// One known field: its JSON key (and column name) and how it is stored.
#[derive(Debug)]
pub struct FieldSpec {
    pub name: &'static str,
    pub kind: Kind,
}

const fn f(name: &'static str, kind: Kind) -> FieldSpec {
    FieldSpec { name, kind }
}

/// The column that keeps, as a JSON object mirroring the record, everything the typed columns
/// cannot hold exactly. NULL when the typed columns hold the whole record.
pub const UNMAPPED: &str = "_unmapped";

const SESSION_ISSUER: &[FieldSpec] = &[
    f("type", Kind::Str),
    f("principalId", Kind::Str),
    f("arn", Kind::Str),
    f("accountId", Kind::Str),
    f("userName", Kind::Str),
];

const SESSION_ATTRIBUTES: &[FieldSpec] = &[
    f("creationDate", Kind::Timestamp),
    f("mfaAuthenticated", Kind::Str),
];

const WEB_ID_FEDERATION: &[FieldSpec] = &[
    f("federatedProvider", Kind::Str),
    f("attributes", Kind::Json),
];

const SESSION_CONTEXT: &[FieldSpec] = &[
    f("sessionIssuer", Kind::Struct(SESSION_ISSUER)),
    f("webIdFederationData", Kind::Struct(WEB_ID_FEDERATION)),
    f("attributes", Kind::Struct(SESSION_ATTRIBUTES)),
    f("sourceIdentity", Kind::Str),
    f("ec2RoleDelivery", Kind::Str),
    f("assumedRoot", Kind::Str),
];

const ON_BEHALF_OF: &[FieldSpec] = &[f("userId", Kind::Str), f("identityStoreArn", Kind::Str)];

const IN_SCOPE_OF: &[FieldSpec] = &[
    f("sourceArn", Kind::Str),
    f("sourceAccount", Kind::Str),
    f("issuerType", Kind::Str),
    f("credentialsIssuedTo", Kind::Str),
];

const USER_IDENTITY: &[FieldSpec] = &[
    f("type", Kind::Str),
    f("principalId", Kind::Str),
    f("arn", Kind::Str),
    f("accountId", Kind::Str),
    f("accessKeyId", Kind::Str),
    f("userName", Kind::Str),
    f("invokedBy", Kind::Str),
    f("identityProvider", Kind::Str),
    f("credentialId", Kind::Str),
    f("onBehalfOf", Kind::Struct(ON_BEHALF_OF)),
    f("inScopeOf", Kind::Struct(IN_SCOPE_OF)),
    f("sessionContext", Kind::Struct(SESSION_CONTEXT)),
];

const RESOURCE: &[FieldSpec] = &[
    f("ARN", Kind::Str),
    f("ARNPrefix", Kind::Str),
    f("accountId", Kind::Str),
    f("type", Kind::Str),
];

const ADDENDUM: &[FieldSpec] = &[
    f("reason", Kind::Str),
    f("updatedFields", Kind::Str),
    f("originalRequestID", Kind::Str),
    f("originalEventID", Kind::Str),
];

const TLS_DETAILS: &[FieldSpec] = &[
    f("tlsVersion", Kind::Str),
    f("cipherSuite", Kind::Str),
    f("clientProvidedHostHeader", Kind::Str),
];

/// The top-level fields of a CloudTrail record, in the order AWS documents them.
pub const RECORD: &[FieldSpec] = &[
    f("eventVersion", Kind::Str),
    f("userIdentity", Kind::Struct(USER_IDENTITY)),
    f("eventTime", Kind::Timestamp),
    f("eventSource", Kind::Str),
    f("eventName", Kind::Str),
    f("awsRegion", Kind::Str),
    f("sourceIPAddress", Kind::Str),
    f("userAgent", Kind::Str),
    f("errorCode", Kind::Str),
    f("errorMessage", Kind::Str),
    f("requestParameters", Kind::Json),
    f("responseElements", Kind::Json),
    f("additionalEventData", Kind::Json),
    f("requestID", Kind::Str),
    f("eventID", Kind::Str),
    f("readOnly", Kind::Bool),
    f("resources", Kind::ListOfStruct(RESOURCE)),
    f("eventType", Kind::Str),
    f("apiVersion", Kind::Str),
    f("managementEvent", Kind::Bool),
    f("recipientAccountId", Kind::Str),
    f("serviceEventDetails", Kind::Json),
    f("sharedEventID", Kind::Str),
    f("vpcEndpointId", Kind::Str),
    f("vpcEndpointAccountId", Kind::Str),
    f("eventCategory", Kind::Str),
    f("addendum", Kind::Struct(ADDENDUM)),
    f("sessionCredentialFromConsole", Kind::Str),
    f("edgeDeviceDetails", Kind::Json),
    f("tlsDetails", Kind::Struct(TLS_DETAILS)),
    f("eventContext", Kind::Json),
    f("annotation", Kind::Str),
    f("insightDetails", Kind::Json),
];
