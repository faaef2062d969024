#!/usr/bin/env bash
# Installs, from Debian's packages and only when missing, the system parts the tests use: a JDK and Maven
# (the local Kafka broker's jars come from Maven Central), Prometheus with promtool, and Alertmanager with
# amtool. Needs root (or sudo) only when something is missing.
set -euo pipefail
packages=()
command -v java >/dev/null || packages+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || packages+=(maven)
{ command -v prometheus && command -v promtool; } >/dev/null || packages+=(prometheus)
command -v amtool >/dev/null || packages+=(prometheus-alertmanager)
[ ${#packages[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "missing: ${packages[*]}; install them as root (apt-get install ${packages[*]})" >&2; exit 1; }
  sudo=sudo
fi
echo "installing ${packages[*]} from Debian's packages" >&2
$sudo apt-get update -qq
# Without recommends (a node exporter). The tests run their own servers on free ports, so system services
# these packages start, where the init system lets them, are stopped again.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
for service in prometheus prometheus-alertmanager; do
  $sudo service "$service" stop >/dev/null 2>&1 || true
done
