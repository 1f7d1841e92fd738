#!/usr/bin/env bash
# PostgreSQL server binaries for the job-store tests (tests/helpers/postgres.py starts a private
# throwaway cluster with them). Idempotent: installs Debian's package only when initdb is missing.
set -euo pipefail

find_initdb() {
    command -v initdb 2>/dev/null && return 0
    ls -1d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 | grep . && return 0
    return 1
}

if ! initdb_path=$(find_initdb); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "postgres-setup: initdb not found and not root; install PostgreSQL (Debian: apt-get install postgresql)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends postgresql
    initdb_path=$(find_initdb) || { echo "postgres-setup: initdb still missing after install" >&2; exit 1; }
fi

"$initdb_path" --version
"$(dirname "$initdb_path")/pg_ctl" --version
if [ "$(id -u)" -eq 0 ] && ! id -u postgres >/dev/null 2>&1; then
    echo "postgres-setup: running as root but there is no 'postgres' OS user to run the server as" >&2
    exit 1
fi
