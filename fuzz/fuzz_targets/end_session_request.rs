#![no_main]
// Entry point and input layout: handoff_common::fuzzing::end_session_request.
libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff_common::fuzzing::end_session_request(data));
