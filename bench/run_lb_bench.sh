#!/usr/bin/env bash
# The load-balancer benchmark as recorded in bench/RESULTS.md ("Load balancer"):
# wrk -> direct nginx | builtin engine | HAProxy, 1 then 2 workers, http and tcp, medians of
# ROUNDS interleaved runs, then a kill -9 run per engine. Figures go to bench/out/lb.json.
# Needs wrk, nginx and haproxy (scripts/bootstrap installs them). Takes about 7 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap
exec .venv/bin/python bench/lb_bench.py --rounds "${ROUNDS:-5}" --duration "${DURATION:-4}" \
  --json bench/out/lb.json "$@"
