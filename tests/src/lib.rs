//! End-to-end tests for FleetMQ live in `tests/tests/`; this library holds their shared harness.
