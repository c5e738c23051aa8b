#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, the store conformance and crash tests,
# and the integration tests that start the real server and talk to it with independent
# clients (Python's smtplib/imaplib/poplib, curl, openssl). Installs what they need.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-deps.sh test
# A clean checkout (CI) gains nothing from incremental compilation but pays for it in
# time and gigabytes; developers can override.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
exec cargo test --workspace --locked "$@"
