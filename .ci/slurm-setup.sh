#!/usr/bin/env bash
# Install a one-node Slurm (Debian packages) for the `slurm`-marked tests.
#
#   .ci/slurm-setup.sh
#
# Needs root and apt-get (Debian 12: slurmctld/slurmd/slurm-client 22.05, munge 0.5.15). When the
# install is impossible (not root, no apt-get, no network, package missing) it prints why and exits 0:
# the tests then skip with the reason (tests/slurm_cluster.py checks for the binaries itself).
# It only installs; tests/slurm_cluster.py writes /etc/slurm/slurm.conf and starts/stops the daemons.
set -uo pipefail

PKGS=(slurmctld slurmd slurm-client munge)

have_all() {
  command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 \
    && command -v sbatch >/dev/null 2>&1 && { command -v munged >/dev/null 2>&1 || [ -x /usr/sbin/munged ]; }
}

if have_all; then
  echo "slurm-setup: Slurm and munge already installed ($(slurmd -V 2>/dev/null))"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "slurm-setup: not root; cannot install ${PKGS[*]} (slurm tests will skip)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "slurm-setup: no apt-get on this machine; cannot install ${PKGS[*]} (slurm tests will skip)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq; then
  echo "slurm-setup: apt-get update failed (no network or registry?); slurm tests will skip"
  exit 0
fi
if ! apt-get install -y -qq --no-install-recommends "${PKGS[@]}"; then
  echo "slurm-setup: apt-get install ${PKGS[*]} failed; slurm tests will skip"
  exit 0
fi
if have_all; then
  echo "slurm-setup: installed ${PKGS[*]} ($(slurmd -V 2>/dev/null))"
else
  echo "slurm-setup: packages installed but binaries not found on PATH; slurm tests will skip"
fi
exit 0
