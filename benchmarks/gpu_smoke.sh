#!/bin/bash
# Usage: bash benchmarks/gpu_smoke.sh [DEVICE=cuda] [OUTDIR=gpu-smoke] [PARALLEL=8]
# Every agent variant, some explorations, AMP, async collection and h-DQN trained briefly with the learner
# on DEV, then exported to ONNX and evaluated from the file: a device check, one line per case.
DEV=${1:-cuda}; O=${2:-gpu-smoke}; P=${3:-8}; R=$(mktemp -d); mkdir -p "$O"
export PYTHONUNBUFFERED=1 PYTHON=${PYTHON:-python3}
T="--no-track --no-progress --runs-dir $R --device $DEV --set eval.every=null --set eval.final_episodes=2"
cases() {
  for a in dqn double-dqn dueling-dqn noisy-dqn nstep-dqn prioritized-dqn c51 qr-dqn rainbow sb3-dqn; do
    echo "$a|--env CartPole-v1 --agent $a --total-steps 1500 --set agent.learning_starts=200"; done
  for a in dqn c51 qr-dqn rainbow; do echo "$a-amp|--env CartPole-v1 --agent $a --total-steps 1500 --set agent.learning_starts=200 --set train.amp=true"; done
  for x in boltzmann ucb optimistic; do echo "dqn-$x|--env CartPole-v1 --total-steps 1500 --set agent.learning_starts=200 --set exploration.name=$x"; done
  echo "dqn-async|--env CartPole-v1 --total-steps 1500 --set agent.learning_starts=200 --set train.async_collection=true"
  echo "hdqn-sdp|--config sdp-hdqn --total-steps 3000"
  echo "pong-cnn-amp|--config pong-dqn --total-steps 1500 --set agent.learning_starts=300 --set replay.capacity=5000 --set train.amp=true"
}
one() {
  name=${1%%|*}; args=${1#*|}
  { ${PYTHON:-python3} -m qagent train $args $T --run-name $name > $R/$name.train.log 2>&1 \
    && ${PYTHON:-python3} -m qagent export $R/$name -o $R/$name.onnx > $R/$name.export.log 2>&1 \
    && ${PYTHON:-python3} -m qagent eval $R/$name.onnx -n 2 > $R/$name.eval.log 2>&1 \
    && echo "ok   $name $(${PYTHON:-python3} -c "import json;d=json.load(open('$R/$name/run.json'));print(d['status'], d['step'], d['steps_per_second'])")"; } \
    || { echo "FAIL $name"; tail -5 $R/$name.*.log | sed 's/^/     /'; }
}
export -f one; export R T
cases | xargs -P $P -I{} bash -c 'one "{}"' | tee $O/smoke.txt
echo "$(grep -c "^ok" "$O/smoke.txt") passed, $(grep -c "^FAIL" "$O/smoke.txt") failed (logs in $R)"
! grep -q "^FAIL" "$O/smoke.txt"
