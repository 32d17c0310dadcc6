"""The original DynamicBlocks recipe: the library's Trainer against a transcription of the original.

The transcription below is written from reading the original code
(EmoryMLIP/DynamicBlocks): ``RKNet.py`` (``RKNet``, ``runRKNet``: the optimiser
groups), ``utils.py`` (``misfit``, ``trainNet``: the training step,
``getRunDefaults``: the learning rates, the normalisation and the
augmentation, ``interpLayer1Dpreallocated``), ``modules/ClippedModule.py``
(``clip``), ``modules/rk4.py``, ``modules/DoubleSymLayer.py``,
``modules/ConnectingLayer.py`` and ``modules/TvNorm.py``. It keeps the
original's module layout and parameter names, because its optimiser groups
(``'normLayer' in name``) and its clip (``hasattr`` on ``conv``, ``weight``,
children) are defined by them. Weights go from one network to the other with
:func:`dynamicblocks.rknet_from_original`.
"""

from __future__ import annotations

import importlib.util
import json
import math
from bisect import bisect
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cifar_archive import make_batches, write_folder
from torch import nn

import dynamicblocks as db
from dynamicblocks.data import CifarDataset
from dynamicblocks.train import (
    BoxConstraints,
    TrainConfig,
    Trainer,
    epoch_generator,
    is_norm_layer,
    load_checkpoint,
    make_scheduler,
    param_groups,
    recipe,
)

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("cifar10_recipe", ROOT / "examples" / "cifar10.py")
cifar10 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cifar10)

# ----------------------------------------------------------------------------- the transcription


class ClippedModule(nn.Module):
    """``modules/ClippedModule.py``: box constraints by attribute names."""

    min_conv, max_conv, min_def, max_def = -0.5, 0.5, -1.5, 1.5

    def clip(self) -> None:
        for name in ("conv", "conv1", "conv2"):
            if hasattr(self, name):
                conv = getattr(self, name)
                conv.weight.data.clamp_(min=self.min_conv, max=self.max_conv)
                if conv.bias is not None:
                    conv.bias.data.clamp_(min=self.min_conv, max=self.max_conv)
        if hasattr(self, "weight"):
            self.weight.data.clamp_(min=self.min_def, max=self.max_def)
        for module in self.children():  # just the immediate children
            if hasattr(module, "clip"):
                module.clip()
            else:  # e.g. the norm layers, the linear layer, ModuleLists
                if hasattr(module, "weight"):
                    module.weight.data.clamp_(min=self.min_def, max=self.max_def)
                for child in module.children():
                    if hasattr(child, "clip"):
                        child.clip()


class TvNorm(nn.Module):
    """``modules/TvNorm.py``: the scale is a buffer of ones, the bias a parameter."""

    def __init__(self, channels: int, eps: float = 1e-4) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tv_norm(x, self.weight, self.bias, self.eps)


def tv_norm(x, weight, bias, eps):
    z = torch.pow(x, 2)
    z = torch.div(x, torch.sqrt(torch.sum(z, dim=1, keepdim=True) + eps))
    z = z * weight.unsqueeze(0).unsqueeze(-1).unsqueeze(-1)
    return z + bias.unsqueeze(0).unsqueeze(-1).unsqueeze(-1)


class ConnectingLayer(ClippedModule):
    """``modules/ConnectingLayer.py``: conv -> BatchNorm (eps 1e-4) -> ReLU."""

    def __init__(self, channels_in: int, channels_out: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, kernel_size, padding=kernel_size // 2)
        self.act = nn.ReLU()
        self.normLayer = nn.BatchNorm2d(channels_out, eps=1e-4)

    def forward(self, x):
        return self.act(self.normLayer(self.conv(x)))


class DoubleSymLayer(ClippedModule):
    """``modules/DoubleSymLayer.py``: ``-K^T act(N(K x + b)) - b_t``, K shared by conv and convt."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.ReLU()
        self.normLayer = TvNorm(channels)
        self.convt = nn.ConvTranspose2d(channels, channels, 3, padding=1)
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        self.conv.weight = self.weight
        self.convt.weight = self.weight


class Rk4(ClippedModule):
    """``modules/rk4.py`` with ``interpLayer1Dpreallocated``: RK4, linearly interpolated controls.

    The original builds state layers whose parameters are replaced by the
    interpolated tensors (``wleft * left + wright * right``, entry by entry);
    here those tensors go straight into the layer's function.
    """

    def __init__(self, channels: int, t: list[float]) -> None:
        super().__init__()
        self.t_theta, self.t_y = t, t
        self.controlLayers = nn.ModuleList(DoubleSymLayer(channels) for _ in t)

    def state_layer(self, t: float, x: torch.Tensor) -> torch.Tensor:
        theta, layers = self.t_theta, self.controlLayers
        if t <= theta[0]:
            left, right, w_left, w_right = layers[0], layers[0], 1, 0
        elif t >= theta[-1]:
            left, right, w_left, w_right = layers[-1], layers[-1], 1, 0
        else:
            k = bisect(theta, t)
            h = theta[k] - theta[k - 1]
            w_left, w_right = (theta[k] - t) / h, (t - theta[k - 1]) / h
            left, right = layers[k - 1], layers[k]

        def mix(get):
            return w_left * get(left) + w_right * get(right)

        kernel = mix(lambda m: m.conv.weight)
        z = F.conv2d(x, kernel, mix(lambda m: m.conv.bias), padding=1)
        z = tv_norm(z, left.normLayer.weight, mix(lambda m: m.normLayer.bias), left.normLayer.eps)
        z = F.relu(z)
        kernel_t = mix(lambda m: m.convt.weight)
        return -F.conv_transpose2d(z, kernel_t, mix(lambda m: m.convt.bias), padding=1)

    def forward(self, x):
        t = self.t_y
        for k in range(len(t) - 1):
            h = t[k + 1] - t[k]
            mid = t[k] + h / 2
            z1 = self.state_layer(t[k], x)
            z2 = self.state_layer(mid, x + z1 * (h / 2))
            z3 = self.state_layer(mid, x + z2 * (h / 2))
            z4 = self.state_layer(t[k + 1], x + z3 * h)
            x = x + (h / 6) * (z1 + 2 * z2 + 2 * z3 + z4)
        return x


class RKNet(ClippedModule):
    """``RKNet.py``'s ``RKNet``: open, (rk4 block, connector, pool) per block, linear."""

    def __init__(self, widths: list[int], num_classes: int = 10, t=(0, 1, 2, 3, 4)) -> None:
        super().__init__()
        self.open = ConnectingLayer(3, widths[0], 3)
        self.dynamicBlocks = nn.ModuleList(Rk4(w, list(t)) for w in widths[:-1])
        self.connectors = nn.ModuleList(
            ConnectingLayer(a, b, 1) for a, b in zip(widths[:-1], widths[1:])
        )
        self.linear = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        x = self.open(x)
        for k, (block, connector) in enumerate(zip(self.dynamicBlocks, self.connectors)):
            x = connector(block(x))
            last = k == len(self.dynamicBlocks) - 1
            x = F.avg_pool2d(x, x.shape[2:4]) if last else F.avg_pool2d(x, 2)
        return self.linear(x.view(x.size(0), -1))


def misfit(x, labels):
    """``utils.py``'s ``misfit``: cross-entropy of the logits minus their maximum."""
    s = x - torch.max(x, 1)[0].view(-1, 1)
    return nn.CrossEntropyLoss()(s, labels)


def original_optimizer(net: nn.Module, lr: float) -> torch.optim.SGD:
    """``runRKNet``'s optimiser: no weight decay on parameters named ``normLayer``."""
    norm_params, conv_params = [], []
    for name, param in net.named_parameters():
        (norm_params if "normLayer" in name else conv_params).append(param)
    groups = [{"params": norm_params, "weight_decay": 0}, {"params": conv_params}]
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=4e-4, nesterov=False)


def original_inputs(images: torch.Tensor, flips, rows, columns, padding: int) -> torch.Tensor:
    """``getRunDefaults``' CIFAR transform, image by image: flip, padded crop, ToTensor, shift.

    RandomHorizontalFlip, then RandomCrop(size, padding) at ``(rows, columns)``,
    ToTensor (``/ 255`` in float32) and Normalize(mean 0.5, std 1).
    """
    size = images.shape[-1]
    out = []
    for image, flip, row, column in zip(images, flips, rows, columns):
        image = image.flip(-1) if flip else image
        padded = F.pad(image, (padding,) * 4)
        image = padded[:, row : row + size, column : column + size]
        out.append((image.float().div(255) - 0.5) / 1.0)
    return torch.stack(out).double()


def train_original(net, images, labels, lrs, batch_size, seed, padding=4) -> None:
    """``trainNet`` without checkpointing: lr set per epoch, step, clip; batches shared.

    Epoch ``e`` takes the library trainer's draws from ``epoch_generator(seed, e)``:
    the order (the last, incomplete batch kept, as the DataLoader does), then
    the crop offsets and the flips. The library crops first and mirrors the
    crop; the original mirrors first, so its crop column is ``2 * padding``
    minus the library's for a mirrored image.
    """
    optimizer = original_optimizer(net, lrs[0])
    n = len(images)
    for epoch, lr in enumerate(lrs):
        for group in optimizer.param_groups:
            group["lr"] = lr
        g = epoch_generator(seed, epoch)
        order = torch.randperm(n, generator=g)
        offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        columns = torch.where(flips, 2 * padding - offsets[:, 1], offsets[:, 1])
        for batch in torch.split(order, batch_size):
            inputs = original_inputs(
                images[batch], flips[batch], offsets[batch, 0], columns[batch], padding
            )
            net.train()
            optimizer.zero_grad()
            loss = misfit(net(inputs), labels[batch])
            loss.backward()
            optimizer.step()
            net.clip()


def original_net(widths=(4, 8, 8), seed: int = 0) -> RKNet:
    """A float64 transcribed RKNet whose weights lie partly outside the boxes, biases non-zero."""
    g = torch.Generator().manual_seed(seed)
    net = RKNet(list(widths)).double()
    with torch.no_grad():
        for name, param in net.named_parameters():
            if param.ndim >= 2:  # kernels, linear weight: some beyond 0.5 and 1.5
                param.copy_(torch.randn(param.shape, generator=g, dtype=torch.float64) * 0.4)
                if param.ndim == 2:
                    param.mul_(4)
            elif name.endswith("normLayer.weight"):  # BatchNorm scales in [0.5, 2]
                param.copy_(0.5 + 1.5 * torch.rand(param.shape, generator=g, dtype=torch.float64))
            else:  # every bias in [-1, 1]
                param.copy_(2 * torch.rand(param.shape, generator=g, dtype=torch.float64) - 1)
    return net


class ToDouble(nn.Module):
    """Float64 inputs for a float64 network (the dataset serves float32)."""

    def forward(self, x):
        return x.double()


def library_twin(net: RKNet) -> nn.Module:
    """The library's rknet holding ``net``'s weights (and running statistics)."""
    return db.rknet_from_original(net.state_dict())


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def random_images(n: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return images, torch.randint(0, 10, (n,), generator=g)


QUIET = {"progress": False, "verbose": False, "plot": False}

# ----------------------------------------------------------------------------- equivalence


def test_trainer_with_the_original_recipe_equals_the_original_training_step():
    """20 steps (4 epochs of 5 batches, the last of 4 images), augmented, lr 0.1 then 0.01."""
    images, labels = random_images(36, 16)
    original = original_net()
    twin = library_twin(original)
    assert max_difference(library_twin(original).state_dict(), twin.state_dict()) == 0
    start = {k: v.clone() for k, v in twin.state_dict().items()}

    config = recipe("original", "cifar10").train_config(
        epochs=4, batch_size=8, milestones=(3,), seed=3, **QUIET
    )
    data = CifarDataset(images, labels, 10, mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0))
    trainer = Trainer(nn.Sequential(ToDouble(), twin), config)
    history = trainer.fit(data)
    assert len(history) == 4 and trainer.scheduler.last_epoch == 20
    train_original(original, images, labels, [0.1, 0.1, 0.1, 0.01], batch_size=8, seed=3)

    trained = library_twin(original).state_dict()
    difference = max_difference(trained, twin.state_dict())
    assert difference <= 1e-10, difference
    moved = max_difference(trained, start)
    assert moved > 0.1  # training did move the weights
    clipped = [k for k, v in trained.items() if v.ndim == 4 and v.abs().max() == 0.5]
    assert len(clipped) >= 3  # and the clip was active


@pytest.mark.parametrize(
    "change",
    [
        {"weight_decay_on": "kernels"},
        {"box_constraints": None},
        {"box_constraints": (0.5, 100.0)},
        {"nesterov": True},
    ],
    ids=lambda change: next(iter(change)),
)
def test_the_equivalence_test_sees_a_change_of_recipe(change):
    images, labels = random_images(16, 8)
    original = original_net()
    twin = library_twin(original)
    config = recipe("original", "cifar10").train_config(
        epochs=1, batch_size=8, seed=1, **QUIET, **change
    )
    data = CifarDataset(images, labels, 10, mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0))
    Trainer(nn.Sequential(ToDouble(), twin), config).fit(data)
    train_original(original, images, labels, [0.1], batch_size=8, seed=1)
    assert max_difference(library_twin(original).state_dict(), twin.state_dict()) > 1e-6


# ----------------------------------------------------------------------------- decay groups, clip


def _names(net: nn.Module, params: list) -> set[str]:
    named = {id(p): name for name, p in net.named_parameters()}
    return {named[id(p)] for p in params}


def test_weight_decay_groups_are_the_originals():
    original = original_net()
    twin = library_twin(original)
    decay, no_decay = (g["params"] for g in param_groups(twin, 4e-4, on="all_but_norms"))
    norm_group, conv_group = (g["params"] for g in original_optimizer(original, 0.1).param_groups)
    assert [sum(p.numel() for p in ps) for ps in (decay, no_decay)] == [
        sum(p.numel() for p in ps) for ps in (conv_group, norm_group)
    ]
    assert _names(twin, no_decay) == {
        "opening.norm.weight",
        "opening.norm.bias",
        *(f"connectives.{b}.norm.{w}" for b in (0, 1) for w in ("weight", "bias")),
        *(f"blocks.{b}.layers.{k}.norm.bias" for b in (0, 1) for k in range(5)),
    }
    decayed = _names(twin, decay)  # biases too, unlike "kernels"
    assert {"opening.conv.bias", "blocks.0.layers.0.bias_transpose", "classifier.bias"} <= decayed
    kernels = _names(twin, param_groups(twin, 4e-4, on="kernels")[0]["params"])
    assert kernels == {n for n, p in twin.named_parameters() if p.ndim >= 2}


def test_weight_decay_groups_of_other_layers_and_norms():
    net = db.rknet(widths=(4, 4), layer="double")
    _, no_decay = (g["params"] for g in param_groups(net, 1e-3, on="all_but_norms"))
    assert {n for n in _names(net, no_decay) if n.startswith("blocks")} == {
        f"blocks.0.layers.{k}.norm{i}.bias" for k in range(5) for i in (1, 2)
    }
    for norm in (nn.GroupNorm(2, 4), nn.LayerNorm(4), nn.InstanceNorm2d(4, affine=True)):
        assert is_norm_layer(norm)
        net = nn.Sequential(nn.Linear(3, 4), norm)
        assert len(param_groups(net, 1e-3, on="all_but_norms")[1]["params"]) == 2
    assert not is_norm_layer(nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="on must be one of kernels, all_but_norms"):
        param_groups(net, 1e-3, on="biases")
    with pytest.raises(ValueError, match="weight_decay_on must be one of"):
        TrainConfig(weight_decay_on="everything")


@pytest.mark.parametrize("value", [7.0, -7.0])
def test_box_constraints_clip_exactly_what_the_original_clipped(value):
    original = original_net()
    with torch.no_grad():
        for param in original.parameters():
            param.fill_(value)
    twin = library_twin(original)
    original.clip()
    BoxConstraints(0.5, 1.5)(twin)
    clipped = twin.state_dict()
    assert max_difference(library_twin(original).state_dict(), clipped) == 0
    sign = math.copysign(1.0, value)
    bounds = {name: sign * abs(clipped[name]).max().item() for name, _ in twin.named_parameters()}
    at = {bound: {n for n, b in bounds.items() if b == sign * bound} for bound in (0.5, 1.5, 7.0)}
    blocks = [f"blocks.{b}.layers.{k}" for b in (0, 1) for k in range(5)]
    assert at[0.5] == {
        "opening.conv.weight",
        "opening.conv.bias",
        *(f"connectives.{b}.conv.{w}" for b in (0, 1) for w in ("weight", "bias")),
        *(f"{layer}.{w}" for layer in blocks for w in ("weight", "bias")),
    }
    assert at[1.5] == {"opening.norm.weight", "connectives.0.norm.weight",
                       "connectives.1.norm.weight", "classifier.weight"}  # fmt: skip
    assert at[7.0] == {
        "opening.norm.bias",
        "connectives.0.norm.bias",
        "connectives.1.norm.bias",
        "classifier.bias",
        *(f"{layer}.{w}" for layer in blocks for w in ("bias_transpose", "norm.bias")),
    }


def test_box_constraints_leave_transposed_convolution_biases_free():
    net = nn.Sequential(nn.ConvTranspose2d(2, 2, 3), nn.Conv2d(2, 2, 3))
    with torch.no_grad():
        for param in net.parameters():
            param.fill_(3.0)
    BoxConstraints(0.5, 1.5)(net)
    assert net[0].weight.max() == 0.5 and net[0].bias.max() == 3.0
    assert net[1].weight.max() == 0.5 and net[1].bias.max() == 0.5


# ----------------------------------------------------------------------------- schedules


def original_rates(dataset: str) -> np.ndarray:
    """``getRunDefaults``' learning rate per epoch (float32 where the original's are)."""
    ones = lambda n: np.ones(n, dtype=np.float32)  # noqa: E731
    if dataset == "cifar10":
        parts = [1e-1 * ones(60), 1e-2 * ones(20), 1e-3 * ones(20), 1e-4 * ones(20)]
    elif dataset == "cifar100":
        parts = [1e-1 * ones(60), 1 / np.geomspace(1 / 1e-1, 1 / 1e-2, num=20)]
        parts += [1e-2 * ones(20), 1 / np.geomspace(1 / 1e-2, 1 / 1e-3, num=20)]
        parts += [1e-3 * ones(20), 1 / np.geomspace(1 / 1e-3, 1 / 1e-4, num=20)]
        parts += [1e-4 * ones(20)]
    else:  # the default, which stl10 keeps
        parts = [1e-1 * ones(80), 1e-2 * ones(40), 1e-3 * ones(40), 1e-4 * ones(40)]
    return np.concatenate(parts)


def rates(config: TrainConfig, steps_per_epoch: int = 2) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    per_epoch = []
    for _ in range(config.epochs):
        seen = set()
        for _ in range(steps_per_epoch):
            seen.add(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert len(seen) == 1  # set per epoch, as the original did
        per_epoch.append(seen.pop())
    return per_epoch


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "stl10"])
def test_the_recipes_learning_rates_are_the_originals(dataset):
    expected = original_rates(dataset)
    config = recipe("original", dataset).train_config()
    assert config.epochs == len(expected)
    np.testing.assert_allclose(rates(config), expected, rtol=1e-7)  # float32's 0.1 and so on


def test_geometric_schedule_scales_with_the_epochs():
    lrs = rates(TrainConfig(epochs=9, schedule="geometric", lr=1.0), steps_per_epoch=1)
    np.testing.assert_allclose(lrs, [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01, 0.001], rtol=1e-12)
    lrs = rates(TrainConfig(epochs=18, schedule="geometric", lr=1.0), steps_per_epoch=1)
    np.testing.assert_allclose(lrs[6:10], [1, 0.1, 0.1, 0.1], rtol=1e-12)
    with pytest.raises(ValueError, match="milestones is only for schedule='step'"):
        TrainConfig(schedule="geometric", milestones=(3,))
    with pytest.raises(ValueError, match=r"milestones must be an int in \[1, 11\)"):
        TrainConfig(epochs=10, milestones=(5, 11))
    with pytest.raises(ValueError, match="non-decreasing"):
        TrainConfig(epochs=10, milestones=(5, 4))
    assert rates(TrainConfig(epochs=3, milestones=(1, 1, 2)), 1) == pytest.approx([0.1, 1e-3, 1e-4])


def test_recipes_and_their_overrides():
    stl10 = recipe("original", "stl10")
    assert stl10.train_config().milestones == (80, 120, 160)
    assert stl10.train_config(epochs=100).milestones == (40, 60, 80)
    assert stl10.train_config(schedule="cosine").milestones is None
    assert stl10.mean == (0.485, 0.456, 0.406) and stl10.std == (0.229, 0.224, 0.225)
    cifar = recipe("original", "cifar100")
    assert (cifar.mean, cifar.std, cifar.val_fraction) == ((0.5,) * 3, (1.0,) * 3, 0.2)
    library = recipe("library", "cifar10")
    assert library.train_config() == TrainConfig() and library.mean is None
    assert recipe("library", "stl10").train_config().crop_padding == 12
    with pytest.raises(ValueError, match="recipe must be one of library, original"):
        recipe("paper")
    with pytest.raises(ValueError, match="dataset must be one of"):
        recipe("original", "mnist")


# ----------------------------------------------------------------------------- the command line

# A flag of each recipe setting, and the value it gives: different from every recipe's.
OVERRIDES = {
    "epochs": (["--epochs", "7"], 7),
    "batch_size": (["--batch-size", "16"], 16),
    "lr": (["--lr", "0.05"], 0.05),
    "momentum": (["--momentum", "0.5"], 0.5),
    "nesterov": (["--nesterov"], True),
    "weight_decay": (["--weight-decay", "1e-3"], 1e-3),
    "weight_decay_on": (["--weight-decay-on", "kernels"], "kernels"),
    "schedule": (["--schedule", "constant"], "constant"),
    "label_smoothing": (["--label-smoothing", "0.1"], 0.1),
    "box_constraints": (["--no-box-constraints"], None),
    "augment": (["--no-augment"], False),
    "crop_padding": (["--crop-padding", "2"], 2),
    "drop_last": (["--drop-last"], True),
    "best_by": (["--best-by", "acc"], "acc"),
    "milestones": (["--milestones", "3,5"], [3, 5]),
    "mean": (["--mean", "0.1,0.2,0.3"], [0.1, 0.2, 0.3]),
    "std": (["--std", "2"], [2.0, 2.0, 2.0]),
    "val_fraction": (["--val-fraction", "0.1"], 0.1),
}


def _recipe_values(name: str, dataset: str, epochs: int | None = None) -> dict:
    chosen = recipe(name, dataset)
    config = chosen.train_config(**({} if epochs is None else {"epochs": epochs}))
    values = {key: getattr(config, key) for key in chosen.settings}
    values.update(milestones=config.milestones, mean=chosen.mean, std=chosen.std)
    values["val_fraction"] = chosen.val_fraction
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "stl10"])
def test_every_recipe_setting_is_set_unless_its_flag_is_given(dataset):
    expected = _recipe_values("original", dataset)
    assert set(expected) <= set(OVERRIDES)  # every setting of the recipe has a flag here
    args = cifar10.parse_args(["--recipe", "original", "--dataset", dataset])
    assert {key: getattr(args, key) for key in expected} == expected
    assert cifar10.train_config(args) == recipe("original", dataset).train_config()
    for key, (flags, value) in OVERRIDES.items():
        argv = ["--recipe", "original", "--dataset", dataset, *flags]
        if key == "milestones":
            argv += ["--schedule", "step"]
        args = cifar10.parse_args(argv)
        assert getattr(args, key) == value, key
        others = _recipe_values("original", dataset, epochs=args.epochs)
        if key == "schedule":
            others["milestones"] = None  # stl10's milestones are for the step schedule only
        if key == "milestones":
            others["schedule"] = "step"  # cifar100's geometric schedule takes no milestones
        assert {k: getattr(args, k) for k in others if k != key} == {
            k: v for k, v in others.items() if k != key
        }, key


def test_a_flag_equal_to_its_default_still_overrides_the_recipe():
    args = cifar10.parse_args(["--recipe", "original", "--dataset", "stl10", "--epochs", "120"])
    assert args.epochs == 120 and args.milestones == [48, 72, 96] and args.batch_size == 30
    args = cifar10.parse_args(["--recipe", "original", "--box-constraints", "1", "2"])
    assert args.box_constraints == [1.0, 2.0]
    args = cifar10.parse_args(["--recipe", "original", "--weight-decay-on", "kernels"])
    assert args.weight_decay_on == "kernels" and args.best_by == "loss"
    library = cifar10.parse_args([])
    assert cifar10.train_config(library) == TrainConfig()
    assert (library.recipe, library.mean, library.std) == ("library", None, None)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--recipe", "paper"], "argument --recipe: invalid choice: 'paper'"),
        (["--mean", "0.5,0.5"], "argument --mean: must be 1 or 3 comma-separated numbers"),
        (["--std", "0"], "argument --std: must be 1 or 3 comma-separated numbers (> 0)"),
        (["--milestones", "0,3"], "argument --milestones: must be comma-separated epochs (>= 1)"),
        (["--widths", "8,a"], "argument --widths: must be comma-separated channel counts"),
        (["--box-constraints", "1", "1", "--no-box-constraints"], "not allowed with argument"),
    ],
)
def test_bad_recipe_flags_are_one_error_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cifar10.parse_args(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert message in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--milestones", "50,130"], r"--milestones must be an int in \[1, 121\), got 130"),
        (["--milestones", "5", "--schedule", "cosine"], "--milestones is only for schedule"),
        (["--recipe", "original", "--dataset", "stl10", "--epochs", "3", "--milestones", "5"],
         r"--milestones must be an int in \[1, 4\)"),
    ],
)  # fmt: skip
def test_recipe_settings_are_checked_naming_the_flags(argv, message):
    with pytest.raises(cifar10.UsageError, match=message):
        cifar10.train_config(cifar10.parse_args(argv))


def test_model_names_of_he_et_al_and_widths():
    net = cifar10.build_model(cifar10.parse_args(["--model", "preact_resnet20_he"]), 10)
    assert sum(p.numel() for p in net.parameters()) == 272_282
    assert isinstance(net.blocks[1], db.DynamicBlock) and net.blocks[1].num_steps == 2
    with pytest.raises(cifar10.UsageError, match="_he .* is only for preact_resnet"):
        cifar10.build_model(cifar10.parse_args(["--model", "lm_resnet20_he"]), 10)
    with pytest.raises(cifar10.UsageError, match="--widths is only for rknet"):
        cifar10.build_model(cifar10.parse_args(["--model", "parabolic", "--widths", "4,8"]), 10)
    net = cifar10.build_model(cifar10.parse_args(["--widths", "4,8,8"]), 10)
    assert [b.layers[0].weight.shape[0] for b in net.blocks] == [4, 8]
    net = cifar10.build_model(cifar10.parse_args(["--dataset", "stl10"]), 10)
    assert net.classifier.in_features == 128 and len(net.blocks) == 4


def test_an_old_config_json_means_the_old_model_and_normalisation(tmp_path):
    path = tmp_path / "config.json"
    old = {"dataset": "cifar10", "model": "rknet", "scheme": None, "steps": None,
           "grid": None, "controls": None}  # fmt: skip
    path.write_text(json.dumps(old))
    assert cifar10._read_config(path) == {**old, "widths": None, "mean": None, "std": None}
    path.write_text(json.dumps({**old, "mean": [0.5] * 3, "std": [1.0] * 3, "widths": [4, 8]}))
    assert cifar10._read_config(path)["mean"] == [0.5] * 3


# ----------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_folder(root, "cifar10", make_batches("cifar10", per_batch=12))
    return root


def _quick(data_dir: Path, out: Path, *more: str, model=("--widths", "4,4")) -> list[str]:
    return [
        "--data-dir", str(data_dir), "--no-download", "--subset", "40", "--val-fraction", "0.25",
        "--batch-size", "8", "--steps", "1", *model, "--no-progress", "--out", str(out), *more,
    ]  # fmt: skip


def test_the_recipe_is_stored_and_compared_on_resume(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert cifar10.main(_quick(cifar_dir, out, "--recipe", "original", "--epochs", "2")) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["recipe"], config["mean"], config["best_by"]) == ("original", [0.5] * 3, "loss")
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["extra"]["recipe"] == "original" and state["config"]["drop_last"] is False
    assert state["best_loss"] == min(r["val_loss"] for r in state["history"])
    results = json.loads((out / "results.json").read_text())
    assert results["best_val_loss"] == state["best_loss"]
    capsys.readouterr()
    argv = _quick(cifar_dir, out, "--epochs", "3", "--resume")
    assert cifar10.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume:") and err.count("\n") == 1
    assert "--recipe original -> library" in err and "--mean 0.5,0.5,0.5 -> None" in err
    assert "--box-constraints 0.5,1.5 -> None" in err


def test_a_run_from_before_the_recipes_resumes_with_the_old_defaults(cifar_dir, tmp_path, capsys):
    out = tmp_path / "old"
    old = ("--model", "preact_resnet8")  # flags that existed then
    assert cifar10.main(_quick(cifar_dir, out, "--epochs", "1", model=old)) == 0
    state = load_checkpoint(out / "checkpoint.pt")
    new_fields = ("weight_decay_on", "milestones", "crop_padding", "drop_last", "best_by")
    for key in new_fields:
        del state["config"][key]
    for key in cifar10.LATER_ARGS:
        del state["extra"][key]
    del state["best_loss"]
    db.train.atomic_save(state, out / "checkpoint.pt")
    config = json.loads((out / "config.json").read_text())
    for key in (*new_fields, *cifar10.LATER_ARGS):
        del config[key]
    (out / "config.json").write_text(json.dumps(config))

    capsys.readouterr()
    argv = _quick(cifar_dir, out, "--epochs", "2", "--resume", model=old)
    assert cifar10.main([*argv, "--recipe", "original"]) == 2
    assert "--recipe library -> original" in capsys.readouterr().err
    assert cifar10.main(argv) == 0
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2
    assert cifar10.main(["--data-dir", str(cifar_dir), "--subset", "40", "--no-progress",
                         "--evaluate", str(out / "best.pt")]) == 0  # fmt: skip


# ----------------------------------------------------------------------------- STL-10


def write_stl10(root: Path, train: int, test: int, seed: int = 0) -> np.ndarray:
    """Tiny STL-10 files in the official binary format; returns the training images."""
    rng = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    for split, n in (("train", train), ("test", test)):
        images = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        (folder / f"{split}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
        (folder / f"{split}_y.bin").write_bytes(bytes(rng.integers(1, 11, n).tolist()))
        if split == "train":
            train_images = images
    return train_images


@pytest.mark.parametrize("recipe_name", ["library", "original"])
def test_stl10_trains_an_epoch(tmp_path, recipe_name):
    images = write_stl10(tmp_path / "data", train=12, test=6)
    out = tmp_path / "run"
    argv = [
        "--dataset", "stl10", "--data-dir", str(tmp_path / "data"), "--recipe", recipe_name,
        "--epochs", "1", "--batch-size", "4", "--val-fraction", "0.25", "--widths", "4,4,4",
        "--steps", "1", "--no-progress", "--out", str(out),
    ]  # fmt: skip
    assert cifar10.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["epochs"] == 1 and 0 <= results["test_acc"] <= 1
    config = json.loads((out / "config.json").read_text())
    assert config["crop_padding"] == 12
    args = cifar10.parse_args(argv)
    mean, std = cifar10.normalisation(args, db.data.load_stl10(tmp_path / "data"))
    if recipe_name == "library":  # the training images' statistics
        scaled = images.astype(np.float64) / 255
        np.testing.assert_allclose(mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-12)
        np.testing.assert_allclose(std, scaled.std(axis=(0, 2, 3)), rtol=1e-12)
    else:
        assert (mean, std) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def test_models_take_stl10s_96x96_images():
    images = torch.randn(2, 3, 96, 96)
    for name in ("rknet", "preact_resnet8", "preact_resnet8_he", "lm_resnet8", "parabolic"):
        args = cifar10.parse_args(["--dataset", "stl10", "--model", name, "--steps", "1"])
        net = cifar10.build_model(args, 10).eval()
        with torch.no_grad():
            assert net(images).shape == (2, 10), name


@pytest.mark.parametrize("download", [[], ["--no-download"], ["--download"]])
def test_missing_stl10_is_one_error_naming_the_folder_and_the_archive(tmp_path, capsys, download):
    data_dir = tmp_path / "data"
    argv = ["--dataset", "stl10", "--data-dir", str(data_dir), "--out", str(tmp_path / "o")]
    assert cifar10.main([*argv, *download]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: --data-dir {data_dir}: STL-10 not found") and err.count("\n") == 1
    )
    assert "https://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz" in err
    assert f"tar -xzf stl10_binary.tar.gz -C {data_dir}" in err and "as --data-dir" in err
    assert "never downloads STL-10" in err and not (tmp_path / "o").exists()
