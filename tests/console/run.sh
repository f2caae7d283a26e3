#!/usr/bin/env bash
# End-to-end tests of the web console in a real browser: Debian's headless Chromium, driven by
# playwright-core (pinned in package-lock.json; its own browser download is never used),
# against a real `tocsin serve`. Builds nothing: give it the `tocsin` binary.
#
#   bash tests/console/run.sh target/debug/tocsin
#
# Installs what it needs: chromium with apt-get when /usr/bin/chromium is missing, and the
# npm packages with `npm ci`. Starts the server on a fresh data directory and a free loopback
# port, as a new user would (its first start creates the owner, with TOCSIN_OWNER_PASSWORD), runs
# console.test.js, which saves its screenshots to target/console-screenshots/ (or, with
# UPDATE_SCREENSHOTS=1, over the README's in docs/screenshots/, to be committed), and always
# stops the server. Test runs thus leave the working tree as they found it.
#
# A tool that cannot be installed is a skip on a developer's machine and a failure under
# CI=true: CI must never pass by not running the test.
set -euo pipefail

name=console
source "$(dirname "$0")/../lib.sh"
runner_init "$@"

apt_install() {
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    return 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

chromium="${TOCSIN_TEST_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
  echo "console: $chromium is missing; installing Debian's chromium" >&2
  apt_install chromium fonts-dejavu-core || unavailable "cannot install chromium with apt-get (run as root on Debian, or set TOCSIN_TEST_CHROMIUM)"
  [[ -x "$chromium" ]] || unavailable "apt-get installed chromium but $chromium does not exist"
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "console: node or npm is missing; installing Debian's nodejs and npm" >&2
  apt_install nodejs npm || unavailable "cannot install node and npm with apt-get"
fi
# playwright-core needs Node 20 or newer.
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
  unavailable "node $(node --version) is too old; playwright-core needs Node 20 or newer"

# Fails loudly: a registry or network problem is not a reason to report success.
if ! (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
  echo "console: FAILED: npm ci in $here failed" >&2
  exit 1
fi

runner_workdir
unset TOCSIN_OWNER_PASSWORD

owner_email="owner@localhost"
owner_password="console-test-$(node -e 'process.stdout.write(require("crypto").randomBytes(9).toString("hex"))')"

# The first start creates the owner with this password (for the console) and a first key in
# owner-token (for the test's API checks).
TOCSIN_OWNER_PASSWORD="$owner_password" start_server

if [[ "${UPDATE_SCREENSHOTS:-}" == 1 ]]; then
  shots="$root/docs/screenshots"
else
  target_dir="${CARGO_TARGET_DIR:-target}"
  [[ "$target_dir" = /* ]] || target_dir="$root/$target_dir"
  shots="$target_dir/console-screenshots"
fi
mkdir -p "$shots"
set +e
TOCSIN_URL="$url" TOCSIN_OWNER_EMAIL="$owner_email" TOCSIN_OWNER_PASSWORD="$owner_password" \
  TOCSIN_OWNER_TOKEN_FILE="$data/owner-token" TOCSIN_TEST_CHROMIUM="$chromium" \
  TOCSIN_TEST_BIN="$bin" TOCSIN_TEST_DATA_DIR="$data" \
  TOCSIN_SCREENSHOTS="$shots" TOCSIN_TEST_SUMMARY="$work/summary" \
  node --test-reporter=spec "$here/console.test.js"
status=$?
set -e
if [[ -s "$work/summary" ]]; then
  cat "$work/summary"
elif [[ $status -eq 0 ]]; then
  echo "console: FAILED: the test script ended without running its steps" >&2
  status=1
fi
if [[ $status -ne 0 ]]; then
  echo "console: console.test.js failed (exit $status); the server's log:" >&2
  tail -n 200 "$log" >&2
fi
exit "$status"
