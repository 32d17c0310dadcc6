"""Fit y = x with four dense layers, plain against residual: vanishing gradients at depth four.

    python examples/vanishing_gradients.py                 # CPU, about 20 s
    python examples/vanishing_gradients.py --seeds 5 --epochs 3000
    python examples/vanishing_gradients.py --skip chain --out runs/vanishing_chain

The introductory ResNet example of the lecture notes ("Comparing Performance",
Flux.jl): the identity map ``y = x`` on the 21 integers ``x = -10, ..., 10``,
fitted by

* plain: ``Dense(1 => 1, tanh)``, two more ``Dense(1 => 1, tanh)`` and
  ``Dense(1 => 1, identity)``;
* residual: the same four layers with skip connections around the three tanh
  layers, the last (identity) layer outside them.

Both start from the same initial weights. Each is trained by Adam on shuffled
mini-batches of 8 and stops after the first epoch whose MSE on all 21 points is
below 0.01 (at most --epochs epochs); the epoch count is the result the notes
benchmark. The per-layer gradient norms ``|dL/dW_l|`` (weights and bias of layer
``l`` together) of the full-data MSE at the initial weights show the vanishing
gradient: in the plain network the first layer's signal passes two more
saturating tanh layers.

Taken from the notes: widths 1, tanh/identity activations, Adam with Flux's
defaults (learning rate 1e-3, betas (0.9, 0.999), eps 1e-8), batch size 8 with
reshuffling every epoch (the last batch of an epoch has 5 points), the stopping
rule (full-data MSE < 0.01, at most 10 000 epochs), Flux's default ``Dense``
initialisation (Glorot-uniform weights ``U(-a, a)``, ``a = sqrt(6 / (fan_in +
fan_out))``, zero biases) and float32.

Choices the notes leave open or that differ from them:

* Skips. The notes wrap the three tanh layers in a single ``SkipConnection``,
  ``x + F3(F2(F1(x)))`` (``--skip chain``). The default, ``--skip each``, wraps
  each one, ``x_k = x_{k-1} + tanh(W_k x_{k-1} + b_k)``: the three residual units
  are exactly ``DynamicBlock(layer, t=(0, 1, 2, 3), scheme="euler")`` with one
  control per step (forward Euler, ``h = 1``). Both keep the last layer outside.
* Widths above 1 (``--width``, not in the notes). The first layer maps 1 to
  ``width`` channels. The residual stream is the input zero-padded to ``width``
  channels (the ResNet paper's shortcut option A), and the residual network's
  first layer is a ``width x width`` layer holding the plain network's ``W_1`` in
  its first column and zeros in the others; their inputs are zero, so their
  gradients are exactly zero and they stay zero. With ``--width 1`` (the
  default) there is no padding.
* The gradient norms are of the MSE on all 21 points (the notes show none).
* The notes run each network repeatedly under ``@benchmark`` (which, since the
  model is not reset, keeps training the same one); here ``--seeds N`` repeats
  the comparison for seeds ``seed, ..., seed + N - 1``, each with fresh weights.
* Both networks see the same batch order (a generator seeded with the run's seed).

Everything goes to --out (default runs/vanishing_gradients): gradients.png
(per-layer gradient norms at initialisation, log scale), loss.png (full-data MSE
per epoch with the 0.01 line) and results.json (epochs to MSE < 0.01 per
network, null with a note where not reached, gradient norms, seeds, settings).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import dynamicblocks as db  # noqa: E402

from _fit import positive  # noqa: E402

TARGET_MSE = 0.01
NETWORKS = ("plain", "residual")
SKIPS = ("each", "chain")
Weights = list[tuple[torch.Tensor, torch.Tensor]]


def make_data() -> tuple[torch.Tensor, torch.Tensor]:
    """``x = -10, ..., 10`` and ``y = x``, both float32 of shape ``(21, 1)``."""
    x = torch.arange(-10, 11, dtype=torch.float32).unsqueeze(1)
    return x, x.clone()


def initial_weights(width: int = 1, seed: int = 0) -> Weights:
    """The four layers' ``(weight, bias)`` pairs as Flux initialises ``Dense``.

    Shapes ``1 => width``, ``width => width`` twice and ``width => 1``; weights
    Glorot-uniform ``U(-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))``,
    biases zero. Drawn from a generator seeded with ``seed``.
    """
    generator = torch.Generator().manual_seed(seed)
    weights = []
    for fan_in, fan_out in ((1, width), (width, width), (width, width), (width, 1)):
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        weight = (2.0 * torch.rand(fan_out, fan_in, generator=generator) - 1.0) * bound
        weights.append((weight, torch.zeros(fan_out)))
    return weights


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer


class TanhDense(nn.Module):
    """``x -> tanh(W x + b)``, Flux's ``Dense(in => out, tanh)``."""

    def __init__(self, fan_in: int, fan_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(fan_in, fan_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(x))

    def load(self, weight: torch.Tensor, bias: torch.Tensor) -> TanhDense:
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
        return self


class PlainNet(nn.Module):
    """``W4 tanh(W3 tanh(W2 tanh(W1 x + b1) + b2) + b3) + b4``."""

    def __init__(self, weights: Weights) -> None:
        super().__init__()
        self.hidden = nn.ModuleList(
            TanhDense(w.shape[1], w.shape[0]).load(w, b) for w, b in weights[:3]
        )
        self.head = _linear(*weights[3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = layer(x)
        return self.head(x)

    def dense_layers(self) -> list[nn.Linear]:
        """The four affine maps, input to output."""
        return [layer.linear for layer in self.hidden] + [self.head]


class ResidualNet(nn.Module):
    """The same four layers with identity skips around the three tanh layers.

    ``skip="each"``: ``x_k = x_{k-1} + tanh(W_k x_{k-1} + b_k)`` for ``k = 1, 2, 3``,
    a :class:`~dynamicblocks.DynamicBlock` with forward Euler on ``t = 0, 1, 2, 3``
    and one control per step; ``skip="chain"`` (the notes' ``SkipConnection``):
    ``x_3 = x_0 + F3(F2(F1(x_0)))``. Then ``W4 x_3 + b4``. The input is zero-padded
    to the width; the first layer holds ``W1`` in its first column (see the
    module docstring).
    """

    def __init__(self, weights: Weights, skip: str = "each") -> None:
        super().__init__()
        if skip not in SKIPS:
            raise ValueError(f"skip must be one of {SKIPS}, got {skip!r}")
        self.skip = skip
        self.width = width = weights[0][0].shape[0]
        w1, b1 = weights[0]
        first = (F.pad(w1, (0, width - 1)), b1)
        hidden = [first, weights[1], weights[2]]
        if skip == "each":
            self.block = db.DynamicBlock(TanhDense(width, width), t=(0, 1, 2, 3), scheme="euler")
            for layer, (w, b) in zip(self.block.layers, hidden):
                layer.load(w, b)
            self.units = self.block.layers
        else:
            self.units = nn.ModuleList(TanhDense(width, width).load(w, b) for w, b in hidden)
        self.head = _linear(*weights[3])

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """The input zero-padded to the width: the residual stream's initial state."""
        return F.pad(x, (0, self.width - x.shape[-1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pad(x)
        if self.skip == "each":
            x = self.block(x)
        else:
            h = x
            for unit in self.units:
                h = unit(h)
            x = x + h
        return self.head(x)

    def dense_layers(self) -> list[nn.Linear]:
        """The four affine maps, input to output."""
        return [unit.linear for unit in self.units] + [self.head]


def build(name: str, weights: Weights, skip: str = "each") -> PlainNet | ResidualNet:
    """The network ``name`` (``"plain"`` or ``"residual"``) on copies of ``weights``."""
    return PlainNet(weights) if name == "plain" else ResidualNet(weights, skip)


def gradient_norms(model: PlainNet | ResidualNet, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """``|dL/dW_l|`` for ``l = 1..4``: the 2-norm of weight and bias gradient of the MSE."""
    layers = model.dense_layers()
    params = [p for layer in layers for p in (layer.weight, layer.bias)]
    grads = torch.autograd.grad(F.mse_loss(model(x), y), params)
    return [
        math.hypot(grads[2 * k].norm().item(), grads[2 * k + 1].norm().item()) for k in range(4)
    ]


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 8,
    seed: int = 0,
) -> dict:
    """Adam on shuffled mini-batches until the full-data MSE is below 0.01.

    Returns ``epochs_to_target`` (the first epoch after which the MSE is below
    the target, 0 if it already is, ``None`` if not within ``epochs``),
    ``final_mse`` and ``mse_history`` (the full-data MSE before training and
    after each epoch).

    Raises:
        FloatingPointError: when the MSE is not finite.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        history = [F.mse_loss(model(x), y).item()]
    reached = 0 if history[0] < TARGET_MSE else None
    for epoch in range(1, epochs + 1):
        if reached is not None:
            break
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            F.mse_loss(model(x[batch]), y[batch]).backward()
            optimizer.step()
        with torch.no_grad():
            mse = F.mse_loss(model(x), y).item()
        if not math.isfinite(mse):
            raise FloatingPointError(f"MSE is {mse} after epoch {epoch}: try a smaller --lr")
        history.append(mse)
        if mse < TARGET_MSE:
            reached = epoch
    return {"epochs_to_target": reached, "final_mse": history[-1], "mse_history": history}


def run_seed(seed: int, args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Gradient norms at initialisation and training, both networks from the same weights."""
    weights = initial_weights(args.width, seed)
    result = {"seed": seed}
    for name in NETWORKS:
        model = build(name, weights, args.skip)
        norms = gradient_norms(model, x, y)
        start = time.perf_counter()
        fit = train(model, x, y, args.epochs, args.lr, args.batch_size, seed)
        fit["train_seconds"] = time.perf_counter() - start
        if fit["epochs_to_target"] is None:
            fit["note"] = f"MSE not below {TARGET_MSE} within {args.epochs} epochs"
        result[name] = {"gradient_norms": norms, **fit}
    return result


def plot_gradients(runs: list[dict], path: Path, title: str) -> None:
    """Per-layer gradient norms at initialisation, one line per network and seed, log scale."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    layers = range(1, 5)
    for name, color in zip(NETWORKS, ("tab:red", "tab:blue")):
        for i, run in enumerate(runs):
            ax.plot(
                layers,
                run[name]["gradient_norms"],
                "o-",
                color=color,
                alpha=1.0 if len(runs) == 1 else 0.6,
                label=name if i == 0 else None,
            )
    ax.set(xlabel="layer $\\ell$", ylabel="$|\\partial L / \\partial W_\\ell|$", yscale="log")
    ax.set_xticks(list(layers))
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_loss(runs: list[dict], path: Path, title: str) -> None:
    """Full-data MSE per epoch, both networks, with the 0.01 target line."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, color in zip(NETWORKS, ("tab:red", "tab:blue")):
        for i, run in enumerate(runs):
            history = run[name]["mse_history"]
            ax.plot(
                range(len(history)),
                history,
                color=color,
                alpha=1.0 if len(runs) == 1 else 0.6,
                label=name if i == 0 else None,
            )
    ax.axhline(TARGET_MSE, color="black", ls="--", lw=1, label=f"MSE = {TARGET_MSE}")
    ax.set(xlabel="epoch", ylabel="MSE on x = -10..10", yscale="log")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(runs: list[dict], epochs: int) -> None:
    header = f"{'seed':>4}  {'network':<8}  {'epochs to MSE<0.01':>18}  {'final MSE':>9}"
    print(header + "".join(f"  {f'|dL/dW_{k}|':>10}" for k in range(1, 5)))
    for run in runs:
        for name in NETWORKS:
            r = run[name]
            reached = r["epochs_to_target"]
            count = f"> {epochs} (not reached)" if reached is None else str(reached)
            norms = "".join(f"  {g:10.3e}" for g in r["gradient_norms"])
            print(f"{run['seed']:>4}  {name:<8}  {count:>18}  {r['final_mse']:9.3e}{norms}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--epochs", type=positive(int), default=10_000, help="most epochs (default 10000)")
    add("--lr", type=positive(float), default=1e-3, help="Adam learning rate (default 1e-3)")
    add("--batch-size", type=positive(int), default=8, help="mini-batch size (default 8)")
    add("--width", type=positive(int), default=1, help="hidden width (default 1, the notes')")
    add("--skip", default="each", choices=SKIPS, help="skip around each tanh layer or all three")
    add("--seed", type=int, default=0, help="first seed (initial weights and batch order)")
    add("--seeds", type=positive(int), default=1, help="number of seeds (default 1)")
    add("--out", default="runs/vanishing_gradients", help="output directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the example; return the results that are written to OUT/results.json."""
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    x, y = make_data()
    runs = []
    for seed in range(args.seed, args.seed + args.seeds):
        try:
            runs.append(run_seed(seed, args, x, y))
        except FloatingPointError as error:
            raise SystemExit(f"error: seed {seed}: {error}") from None
    print_table(runs, args.epochs)
    settings = (
        f"width {args.width}, skip {args.skip}, Adam lr {args.lr:g}, batch {args.batch_size}, "
        f"at most {args.epochs} epochs"
    )
    plot_gradients(runs, out / "gradients.png", f"gradient norms at initialisation\n{settings}")
    plot_loss(runs, out / "loss.png", f"identity fit on x = -10..10\n{settings}")
    results = {
        "target_mse": TARGET_MSE,
        "epochs_to_target": {
            name: [run[name]["epochs_to_target"] for run in runs] for name in NETWORKS
        },
        "gradient_norms": {
            name: [run[name]["gradient_norms"] for run in runs] for name in NETWORKS
        },
        "seeds": [run["seed"] for run in runs],
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "width": args.width,
        "skip": args.skip,
        "elapsed_seconds": time.perf_counter() - start,
        "runs": runs,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{settings}; {results['elapsed_seconds']:.1f} s; output in {out}")
    return results


if __name__ == "__main__":
    main()
