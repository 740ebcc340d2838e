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
    /// `name`'s print, for matching keys without a byte-by-byte compare.
    pub print: KeyPrint,
}

const fn f(name: &'static str, kind: Kind) -> FieldSpec {
    FieldSpec {
        name,
        kind,
        print: KeyPrint::of(name),
    }
}

/// A key's length and its first and last eight bytes: two keys of up to 16 bytes are equal
/// exactly when their prints are, so the decoder matches most keys with three integer
/// comparisons instead of a `memcmp` call per candidate field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPrint {
    len: usize,
    head: u64,
    tail: u64,
}

impl KeyPrint {
    /// The print of `key`; bytes past a short key's end count as zero.
    #[inline]
    pub const fn of(key: &str) -> KeyPrint {
        const fn load(b: &[u8], at: usize) -> u64 {
            if at + 8 <= b.len() {
                let mut word = [0u8; 8];
                let mut i = 0;
                while i < 8 {
                    word[i] = b[at + i];
                    i += 1;
                }
                return u64::from_le_bytes(word);
            }
            let mut v = 0u64;
            let mut i = 0;
            while at + i < b.len() {
                v |= (b[at + i] as u64) << (8 * i);
                i += 1;
            }
            v
        }
        let b = key.as_bytes();
        KeyPrint {
            len: b.len(),
            head: load(b, 0),
            tail: load(b, b.len().saturating_sub(8)),
        }
    }

    /// [`KeyPrint::of`] as the decoder takes it, a key at a time: whole-word loads, where the
    /// `const` version (which the schema's prints are made with) goes byte by byte.
    #[inline]
    pub fn of_key(key: &str) -> KeyPrint {
        let b = key.as_bytes();
        let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let (head, tail) = match b.len() {
            8.. => (word(0), word(b.len() - 8)),
            // Two loads that overlap put the same bytes in the same places.
            4..=7 => {
                let half = |at: usize| {
                    u64::from(u32::from_le_bytes(
                        b[at..at + 4].try_into().expect("4 bytes"),
                    ))
                };
                let v = half(0) | half(b.len() - 4) << (8 * (b.len() - 4));
                (v, v)
            }
            1..=3 => {
                let at = |i: usize| u64::from(b[i]) << (8 * i);
                let v = at(0) | at(b.len() / 2) | at(b.len() - 1);
                (v, v)
            }
            0 => (0, 0),
        };
        KeyPrint {
            len: b.len(),
            head,
            tail,
        }
    }

    /// Whether `name`, whose print this is, equals `key`, whose print is `key_print`.
    #[inline]
    pub fn matches(&self, name: &str, key_print: &KeyPrint, key: &str) -> bool {
        self == key_print
            && (self.len <= 16
                || name.as_bytes()[8..self.len - 8] == key.as_bytes()[8..self.len - 8])
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn all_lists(specs: &'static [FieldSpec], out: &mut Vec<&'static [FieldSpec]>) {
        out.push(specs);
        for spec in specs {
            if let Kind::Struct(children) | Kind::ListOfStruct(children) = spec.kind {
                all_lists(children, out);
            }
        }
    }

    #[test]
    fn a_print_made_at_run_time_is_the_one_made_at_compile_time() {
        let text = "userIdentity.sessionContext.sessionIssuer\u{e9}";
        for start in 0..text.len() {
            for end in start..=text.len() {
                if let Some(key) = text.get(start..end) {
                    assert_eq!(KeyPrint::of_key(key), KeyPrint::of(key), "{key}");
                }
            }
        }
    }

    #[test]
    fn a_print_matches_its_own_name_and_no_other_key() {
        let mut lists = Vec::new();
        all_lists(RECORD, &mut lists);
        for specs in lists {
            for spec in specs {
                let own = KeyPrint::of(spec.name);
                assert_eq!(own, spec.print, "{}", spec.name);
                for other in specs {
                    let p = KeyPrint::of(other.name);
                    assert_eq!(
                        spec.print.matches(spec.name, &p, other.name),
                        spec.name == other.name
                    );
                }
                // The same key with any one byte changed, a byte longer or shorter.
                for i in 0..spec.name.len() {
                    let mut bytes = spec.name.as_bytes().to_vec();
                    bytes[i] ^= 0x20;
                    let changed = String::from_utf8(bytes).unwrap();
                    let p = KeyPrint::of(&changed);
                    assert!(!spec.print.matches(spec.name, &p, &changed), "{changed}");
                }
                for changed in [format!("{}x", spec.name), spec.name[1..].to_string()] {
                    let p = KeyPrint::of(&changed);
                    assert!(!spec.print.matches(spec.name, &p, &changed), "{changed}");
                }
            }
        }
    }
}
