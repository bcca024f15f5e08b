#!/usr/bin/env bash
# Quick start: install what is missing, start a local influxd, run the main job on the shipped data.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v influxd >/dev/null; then
  echo "installing InfluxDB 1.x (apt package influxdb)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq influxdb >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv and installing the package"
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
fi
exec .venv/bin/python -m pipeline.demo "$@"
