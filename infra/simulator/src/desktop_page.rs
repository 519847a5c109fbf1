//! The agent-desktop page shared by the simulators whose control API views are
//! alike (Genesys, Salesforce, NICE, Webex); Connect and Zendesk keep their own
//! pages for their extra panels (waiting customers, ticket fields).

const TEMPLATE: &str = include_str!("../assets/agent-desktop.html");

/// What differs per platform on the page.
pub struct DesktopPage {
    /// e.g. "Genesys Cloud".
    pub title: &'static str,
    /// The `/sim/{prefix}/…` control API.
    pub prefix: &'static str,
    /// Label of the "send as bot" checkbox.
    pub bot_label: &'static str,
    /// Whether the platform has an agent typing signal to send.
    pub agent_typing: bool,
}

impl DesktopPage {
    pub fn render(&self) -> String {
        TEMPLATE
            .replace("{{TITLE}}", self.title)
            .replace("{{PREFIX}}", self.prefix)
            .replace("{{BOT_LABEL}}", self.bot_label)
            .replace(
                "{{AGENT_TYPING}}",
                if self.agent_typing { "true" } else { "false" },
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled() {
        let page = DesktopPage {
            title: "Webex Contact Center",
            prefix: "webex",
            bot_label: "as flow",
            agent_typing: false,
        }
        .render();
        assert!(!page.contains("{{"), "unfilled placeholder");
        assert!(page.contains("/sim/webex/conversations"));
        assert!(page.contains("var AGENT_TYPING = false;"));
        assert!(page.contains("<title>Webex Contact Center simulator"));
    }
}
