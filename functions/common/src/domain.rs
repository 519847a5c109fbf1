//! Domain types: tenants, sessions, integrations and the session state machine.
//! Parsed once at the edge; code inside never re-checks them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{HandoffError, Result};

/// The environment of a tenant's deployment. Credentials never cross environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClientEnv {
    #[serde(rename = "sandbox")]
    Sandbox,
    #[serde(rename = "pre-release")]
    PreRelease,
    #[serde(rename = "live")]
    Live,
}

impl ClientEnv {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::PreRelease => "pre-release",
            Self::Live => "live",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "sandbox" => Ok(Self::Sandbox),
            "pre-release" => Ok(Self::PreRelease),
            "live" => Ok(Self::Live),
            other => Err(HandoffError::invalid(format!(
                "client_env must be sandbox, pre-release or live, not {other:?}"
            ))),
        }
    }
}

/// `(account_id, project_id, client_env)`: the unit of isolation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tenant {
    pub account_id: String,
    pub project_id: String,
    pub client_env: ClientEnv,
}

/// Longest account, project or session id we accept.
pub const MAX_ID_LEN: usize = 128;

fn check_id(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_ID_LEN {
        return Err(HandoffError::invalid(format!(
            "{what} must be 1 to {MAX_ID_LEN} characters"
        )));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(HandoffError::invalid(format!(
            "{what} may hold only letters, digits, '-', '_', '.', ':'"
        )));
    }
    Ok(())
}

impl Tenant {
    pub fn new(account_id: &str, project_id: &str, client_env: ClientEnv) -> Result<Self> {
        check_id("tenant.account_id", account_id)?;
        check_id("tenant.project_id", project_id)?;
        Ok(Self {
            account_id: account_id.to_owned(),
            project_id: project_id.to_owned(),
            client_env,
        })
    }

    /// `account/project/env`: used in store keys and secret names.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.account_id,
            self.project_id,
            self.client_env.as_str()
        )
    }

    /// Inverse of [`Tenant::key`].
    pub fn from_key(key: &str) -> Result<Self> {
        let mut parts = key.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(p), Some(e), None) => Tenant::new(a, p, ClientEnv::parse(e)?),
            _ => Err(HandoffError::invalid("malformed tenant key")),
        }
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// The agent runtime's conversation id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    pub fn parse(value: &str) -> Result<Self> {
        check_id("session_id", value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A contact-centre platform, named by its integration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationKey {
    #[serde(rename = "genesys_integration")]
    Genesys,
    #[serde(rename = "amazon_connect_integration")]
    AmazonConnect,
    #[serde(rename = "salesforce_integration")]
    Salesforce,
    #[serde(rename = "zendesk_integration")]
    Zendesk,
    #[serde(rename = "nice_integration")]
    Nice,
    #[serde(rename = "webex_integration")]
    Webex,
    #[serde(rename = "five9_integration")]
    Five9,
    #[serde(rename = "talkdesk_integration")]
    Talkdesk,
}

impl IntegrationKey {
    pub const ALL: [IntegrationKey; 8] = [
        Self::Genesys,
        Self::AmazonConnect,
        Self::Salesforce,
        Self::Zendesk,
        Self::Nice,
        Self::Webex,
        Self::Five9,
        Self::Talkdesk,
    ];

    /// The key used in requests and secret names, e.g. `genesys_integration`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Genesys => "genesys_integration",
            Self::AmazonConnect => "amazon_connect_integration",
            Self::Salesforce => "salesforce_integration",
            Self::Zendesk => "zendesk_integration",
            Self::Nice => "nice_integration",
            Self::Webex => "webex_integration",
            Self::Five9 => "five9_integration",
            Self::Talkdesk => "talkdesk_integration",
        }
    }

    /// The `{provider}` segment of webhook URLs, e.g. `genesys`.
    pub fn path_name(self) -> &'static str {
        match self {
            Self::Genesys => "genesys",
            Self::AmazonConnect => "amazon-connect",
            Self::Salesforce => "salesforce",
            Self::Zendesk => "zendesk",
            Self::Nice => "nice",
            Self::Webex => "webex",
            Self::Five9 => "five9",
            Self::Talkdesk => "talkdesk",
        }
    }

    pub fn parse(key: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == key)
            .ok_or_else(|| HandoffError::UnknownIntegration(key.to_owned()))
    }

    pub fn from_path_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.path_name() == name)
    }
}

impl fmt::Display for IntegrationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `pending -> queued -> active -> ended`; an agent leaving an open
/// conversation goes back to `queued`; `ended` is terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    Pending,
    Queued,
    Active,
    Ended,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::Active => "active",
            Self::Ended => "ended",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "pending" => Ok(Self::Pending),
            "queued" => Ok(Self::Queued),
            "active" => Ok(Self::Active),
            "ended" => Ok(Self::Ended),
            other => Err(HandoffError::internal(format!("unknown state {other:?}"))),
        }
    }

    /// Whether the state machine allows `self -> next`.
    pub fn can_become(self, next: SessionState) -> bool {
        use SessionState::*;
        matches!(
            (self, next),
            (Pending, Queued)
                | (Pending, Active)
                | (Pending, Ended)
                | (Queued, Active)
                | (Queued, Ended)
                | (Active, Queued)
                | (Active, Ended)
        )
    }

    /// The states from which `next` may be reached, for conditional updates.
    pub fn predecessors(next: SessionState) -> Vec<SessionState> {
        [Self::Pending, Self::Queued, Self::Active, Self::Ended]
            .into_iter()
            .filter(|s| s.can_become(next))
            .collect()
    }

    pub fn is_terminal(self) -> bool {
        self == Self::Ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionState::*;

    #[test]
    fn ended_is_terminal() {
        for next in [Pending, Queued, Active, Ended] {
            assert!(!Ended.can_become(next), "ended -> {next:?} must be refused");
        }
        assert!(Ended.is_terminal());
    }

    #[test]
    fn lifecycle_transitions() {
        assert!(Pending.can_become(Queued));
        assert!(Queued.can_become(Active));
        assert!(
            Active.can_become(Queued),
            "agent left, conversation still open"
        );
        assert!(Active.can_become(Ended));
        assert!(!Queued.can_become(Pending));
        assert!(!Active.can_become(Pending));
        assert!(!Active.can_become(Active));
    }

    #[test]
    fn predecessors_match_can_become() {
        assert_eq!(SessionState::predecessors(Active), vec![Pending, Queued]);
        assert_eq!(
            SessionState::predecessors(Ended),
            vec![Pending, Queued, Active]
        );
        assert_eq!(SessionState::predecessors(Pending), vec![]);
    }

    #[test]
    fn tenant_ids_are_checked() {
        assert!(Tenant::new("acme", "support", ClientEnv::Live).is_ok());
        assert!(Tenant::new("", "support", ClientEnv::Live).is_err());
        assert!(Tenant::new("ac/me", "support", ClientEnv::Live).is_err());
        assert!(Tenant::new("acme", &"p".repeat(129), ClientEnv::Live).is_err());
        let t = Tenant::new("acme", "support", ClientEnv::PreRelease).unwrap();
        assert_eq!(t.key(), "acme/support/pre-release");
        assert_eq!(Tenant::from_key(&t.key()).unwrap(), t);
    }

    #[test]
    fn client_env_parses_only_the_three_names() {
        assert_eq!(
            ClientEnv::parse("pre-release").unwrap(),
            ClientEnv::PreRelease
        );
        assert!(ClientEnv::parse("prod").is_err());
        assert!(ClientEnv::parse("Live").is_err());
    }

    #[test]
    fn integration_keys_round_trip() {
        for key in IntegrationKey::ALL {
            assert_eq!(IntegrationKey::parse(key.as_str()).unwrap(), key);
            assert_eq!(IntegrationKey::from_path_name(key.path_name()), Some(key));
        }
        assert!(matches!(
            IntegrationKey::parse("avaya_integration"),
            Err(HandoffError::UnknownIntegration(_))
        ));
    }
}
