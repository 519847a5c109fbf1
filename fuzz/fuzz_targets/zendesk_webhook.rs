#![no_main]
// Entry point and input layout: handoff_common::fuzzing::zendesk_webhook.
libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff_common::fuzzing::zendesk_webhook(data));
