//! The scripted "AI" agent: just enough conversation to make a handoff look real.

/// What the bot says when it escalates; also start-handoff's `utterance`.
pub const HANDOFF_UTTERANCE: &str = "No problem, I'll transfer you to a live agent now.";

/// Words that mean "let me talk to a person".
const LIVE_AGENT_WORDS: &[&str] = &[
    "agent",
    "agents",
    "human",
    "humans",
    "person",
    "people",
    "representative",
    "representatives",
];
const GREETING_WORDS: &[&str] = &["hi", "hello", "hey", "hiya", "morning", "afternoon"];
const DAMAGE_WORDS: &[&str] = &["broken", "damaged", "cracked", "smashed", "faulty"];
const REFUND_WORDS: &[&str] = &["refund", "return", "money"];
const BILLING_WORDS: &[&str] = &["bill", "billing", "charge", "charged", "invoice", "payment"];
const THANKS_WORDS: &[&str] = &["thanks", "thank", "cheers"];

/// The bot's answer to one customer message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotTurn {
    Reply(String),
    /// Say [`HANDOFF_UTTERANCE`] and call start-handoff.
    Handoff,
}

/// Lowercase alphanumeric words, so "agent?" matches and "agentic" does not.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn mentions(words: &[String], vocabulary: &[&str]) -> bool {
    words.iter().any(|w| vocabulary.contains(&w.as_str()))
}

/// True when the customer asks for a live agent.
pub fn wants_live_agent(text: &str) -> bool {
    mentions(&words(text), LIVE_AGENT_WORDS)
}

pub fn respond(display_name: &str, text: &str) -> BotTurn {
    if wants_live_agent(text) {
        return BotTurn::Handoff;
    }
    let words = words(text);
    let reply = if mentions(&words, DAMAGE_WORDS) {
        "I'm sorry to hear your order arrived damaged. I can arrange a replacement, \
         or connect you with a live agent if you'd prefer."
            .to_owned()
    } else if mentions(&words, REFUND_WORDS) {
        "Refunds usually take 3–5 working days once we receive the item. \
         Would you like me to connect you with a live agent?"
            .to_owned()
    } else if mentions(&words, BILLING_WORDS) {
        "I can see billing questions are best handled by our team. \
         Just ask and I'll connect you with a live agent."
            .to_owned()
    } else if mentions(&words, THANKS_WORDS) {
        "You're welcome! Anything else I can help with?".to_owned()
    } else if mentions(&words, GREETING_WORDS) {
        format!("Hi {display_name}! I'm the demo assistant. How can I help you today?")
    } else {
        "I can help with orders, refunds and billing. \
         If you'd like, I can connect you with a live agent."
            .to_owned()
    };
    BotTurn::Reply(reply)
}

/// A short reason for start-handoff's `context`, from what the customer said.
pub fn handoff_reason<'a>(customer_lines: impl IntoIterator<Item = &'a str>) -> &'static str {
    let said: Vec<String> = customer_lines.into_iter().flat_map(words).collect();
    if mentions(&said, DAMAGE_WORDS) {
        "damaged_order"
    } else if mentions(&said, REFUND_WORDS) {
        "refund"
    } else if mentions(&said, BILLING_WORDS) {
        "billing"
    } else {
        "general"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asking_for_a_person_is_handoff_intent() {
        for text in [
            "I want to talk to a human",
            "AGENT",
            "agent?",
            "Can I speak to a real person please",
            "get me a representative!",
            "are there any people there",
        ] {
            assert!(wants_live_agent(text), "{text}");
            assert_eq!(respond("Ada", text), BotTurn::Handoff, "{text}");
        }
    }

    #[test]
    fn ordinary_messages_are_not_handoff_intent() {
        for text in [
            "hi",
            "my order arrived broken",
            "it's personal",
            "agentic workflows",
            "humanity",
            "",
        ] {
            assert!(!wants_live_agent(text), "{text}");
            assert!(matches!(respond("Ada", text), BotTurn::Reply(_)), "{text}");
        }
    }

    #[test]
    fn bot_greets_by_name_and_answers_damage() {
        assert_eq!(
            respond("Ada", "hi"),
            BotTurn::Reply("Hi Ada! I'm the demo assistant. How can I help you today?".into())
        );
        let BotTurn::Reply(reply) = respond("Ada", "my order arrived broken") else {
            panic!("expected a reply");
        };
        assert!(reply.contains("damaged"), "{reply}");
    }

    #[test]
    fn reason_comes_from_what_the_customer_said() {
        assert_eq!(
            handoff_reason(["hi", "my order arrived broken", "human"]),
            "damaged_order"
        );
        assert_eq!(handoff_reason(["I was charged twice"]), "billing");
        assert_eq!(handoff_reason(["human"]), "general");
    }
}
