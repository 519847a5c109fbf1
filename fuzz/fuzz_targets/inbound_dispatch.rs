#![no_main]
// Entry point and input layout: handoff_common::fuzzing::inbound_dispatch.
libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff_common::fuzzing::inbound_dispatch(data));
