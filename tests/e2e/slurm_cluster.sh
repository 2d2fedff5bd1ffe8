#!/usr/bin/env bash
# A one-node Slurm on localhost for tests: `slurm_cluster.sh start DIR` writes DIR/slurm.conf, starts
# munged (unless one answers already), slurmctld and slurmd with their state, logs and pid files in
# DIR, and waits for the node to be idle; `slurm_cluster.sh stop DIR` ends what start started (by
# pid file). Client commands need SLURM_CONF=DIR/slurm.conf. Exit 77 when Slurm is not installed.
set -uo pipefail
cmd=${1:?start|stop}
dir=${2:?directory}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

stop() {
  for d in slurmd slurmctld munged; do
    [ -f "$dir/$d.pid" ] && kill "$(cat "$dir/$d.pid")" 2>/dev/null
  done
  sleep 1
  for d in slurmd slurmctld munged; do
    [ -f "$dir/$d.pid" ] && kill -9 "$(cat "$dir/$d.pid")" 2>/dev/null
    rm -f "$dir/$d.pid"
  done
  return 0
}

if [ "$cmd" = stop ]; then
  stop
  exit 0
fi

for b in slurmctld slurmd munged sbatch; do
  command -v "$b" >/dev/null || { echo "slurm_cluster: $b not installed" >&2; exit 77; }
done
host=$(hostname -s)
mkdir -p "$dir/state" "$dir/spool" "$dir/log"
cat >"$dir/slurm.conf" <<CONF
ClusterName=tmttest
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SchedulerType=sched/builtin
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=${TMT_SLURMCTLD_PORT:-16817}
SlurmdPort=${TMT_SLURMD_PORT:-16818}
SlurmdParameters=config_overrides
KillWait=20
NodeName=$host CPUs=8 RealMemory=20000 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
CONF

if ! (munge -n | unmunge) >/dev/null 2>&1; then
  [ -f /etc/munge/munge.key ] || mungekey -c -f -k /etc/munge/munge.key >/dev/null 2>&1 ||
    { mkdir -p /etc/munge && dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; }
  chmod 400 /etc/munge/munge.key 2>/dev/null
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  munged --force --pid-file="$dir/munged.pid" || { echo "slurm_cluster: munged failed" >&2; exit 1; }
  for _ in $(seq 50); do (munge -n | unmunge) >/dev/null 2>&1 && break; sleep 0.1; done
fi
export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$dir/slurm.conf" || { echo "slurm_cluster: slurmctld failed" >&2; stop; exit 1; }
slurmd -f "$dir/slurm.conf" || { echo "slurm_cluster: slurmd failed" >&2; stop; exit 1; }
for _ in $(seq 150); do
  state=$(sinfo -h -o %T 2>/dev/null | head -n 1)
  [ "$state" = idle ] && exit 0
  sleep 0.2
done
echo "slurm_cluster: the node did not become idle (state '$state'); logs in $dir/log" >&2
stop
exit 1
