#!/usr/bin/env bash
# CI: the Prefect example's tests (tests_prefect/), in a virtual environment of their own
# made with uv. Where Prefect cannot be installed (no uv, no wheel for this Python, no
# index), the step says why and is skipped: exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-prefect
prefect_requirement=${PREFECT_REQUIREMENT:-'prefect>=3.9,<3.10'}

skip() {
    echo "ci: prefect skipped: $*"
    exit 0
}

start=$SECONDS
uv=$(command -v uv || true)
if [ -z "$uv" ]; then
    rm -rf .venv-uv
    python3 -m venv .venv-uv && .venv-uv/bin/pip install --quiet uv || skip "uv could not be installed"
    uv=.venv-uv/bin/uv
fi
rm -rf "$venv"
"$uv" venv --quiet --python python3 "$venv" || skip "uv could not make a virtual environment"
log=$(mktemp)
if ! "$uv" pip install --quiet --python "$venv/bin/python" -e '.[testing]' "$prefect_requirement" \
    >"$log" 2>&1; then
    reason=$(tail -n 5 "$log")
    rm -f "$log"
    skip "$prefect_requirement could not be installed: $reason"
fi
rm -f "$log"
echo "prefect $("$venv/bin/python" -c 'import prefect; print(prefect.__version__)'):"
"$venv/bin/pytest" -c tests_prefect/pytest.ini tests_prefect -q
echo "ci: prefect passed in $((SECONDS - start)) s"
