//! A mock api.video server.
