#!/usr/bin/env bash
# Regenerate the diagrams under docs/ (needs Graphviz's dot). Run from anywhere: docs/make_images.sh
set -euo pipefail
cd "$(dirname "$0")/.."
nnc() { .venv/bin/nnc "$@"; }

# the backprop circuit f = (x + y) * z: values above the edges, gradients below
nnc viz examples/circuit.nn --at x=-2 y=5 z=-4 -o docs/circuit.svg
nnc viz examples/circuit.nn --at x=-2 y=5 z=-4 --partials -o docs/circuit_partials.svg
# the same walked step by step: one page, previous / next, the nnc explain text beside each frame
nnc viz examples/circuit.nn --at x=-2 y=5 z=-4 --html docs/circuit_steps.html
# the MLP's forward and backward nodes, each backward node labelled with its rule
nnc viz examples/mnist_mlp.nn --view backward -o docs/mnist_mlp_backward.svg
# the MLP's native kernels
nnc viz examples/mnist_mlp.nn --view fused -o docs/mnist_mlp_fused.svg
# the vanishing-gradient slide: train the deep sigmoid MLP with --grad-stats, colour its layers by gradient norm
run=$(mktemp -d)
for act in sigmoid relu; do
  nnc run examples/vanishing.nn --model vanishing_$act --grad-stats --out "$run/$act" --quiet
  nnc viz --heat "$run/$act" -o docs/vanishing_${act}_heat.svg   # also docs/vanishing_${act}_heat_norms.png
done
rm -rf "$run"
# vanishing gradients through time: the gradient that reaches each step of a 50-step sequence, each epoch
run=$(mktemp -d)
for model in vanishing_rnn vanishing_lstm; do
  nnc run examples/vanishing_rnn.nn --model $model --grad-stats --out "$run/$model" --quiet
  nnc viz --heat "$run/$model" -o "$run/${model}_heat.svg"
  cp "$run/${model}_heat_steps.png" docs/
done
rm -rf "$run"
# a GAN's digits after its 20 epochs (about four minutes on two cores)
run=$(mktemp -d)
nnc run examples/mnist_gan.nn --out "$run/gan" --quiet
cp "$run/gan/samples_epoch_20.png" docs/mnist_gan_samples.png
rm -rf "$run"
