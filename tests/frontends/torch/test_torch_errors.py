"""Bad input: one UnsupportedOpError listing every offending place, nothing silently dropped."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hgqir
from hgqir import UnsupportedOpError

THIS_FILE = __file__


class Doubler(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        return x * 2

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def]
        return g * 2


class DataDependent(nn.Module):
    def forward(self, x):  # type: ignore[no-untyped-def]
        if x.sum() > 0:  # data-dependent control flow
            return x
        return -x


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.branch = DataDependent()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fc(self.branch(x))


class Everything(nn.Module):
    """Four different problems in one model."""

    def __init__(self) -> None:
        super().__init__()
        self.block = Block()
        self.rnn = nn.LSTM(4, 4, batch_first=True)
        self.fc = nn.Linear(4, 4)

    def forward(self, x):  # type: ignore[no-untyped-def]
        y = Doubler.apply(self.block(x))
        y, _ = self.rnn(y.unsqueeze(1))
        y = torch.erf(self.fc(y.squeeze(1)))
        return y


def _error(module: nn.Module, x: torch.Tensor) -> UnsupportedOpError:
    with pytest.raises(UnsupportedOpError) as info:
        hgqir.from_torch(module, x)
    return info.value


def test_one_error_lists_every_problem_with_path_and_line() -> None:
    err = _error(Everything(), torch.randn(4, 4))
    items = err.items
    text = "\n".join(items)
    assert len(items) == 4, text
    assert any(i.startswith("block.branch (DataDependent)") and "control flow" in i for i in items), text
    assert any("Doubler" in i and "custom autograd Function" in i for i in items), text
    assert any(i.startswith("rnn (LSTM)") for i in items), text
    assert any("erf" in i for i in items), text
    assert all(f"{THIS_FILE}:" in i for i in items), text  # every item points at a line of this file
    assert "nothing was imported" in str(err)


def test_data_dependent_root_is_reported() -> None:
    err = _error(DataDependent(), torch.randn(4, 4))
    assert len(err.items) == 1 and "control flow" in err.items[0]
    assert f"{THIS_FILE}:" in err.items[0]


def test_quantize_torch_raises_the_same_error() -> None:
    with pytest.raises(UnsupportedOpError):
        hgqir.quantize_torch(nn.Sequential(nn.Linear(4, 4), nn.Softshrink()), torch.randn(4, 4))


@pytest.mark.parametrize(
    "module, shape, words",
    [
        (nn.Conv2d(4, 4, 3, groups=2), (4, 6, 6), "groups=2"),
        (nn.Conv1d(2, 2, 3, dilation=2, groups=2), (2, 9), "dilated depthwise"),
        (nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"), (2, 5, 5), "padding_mode"),
        (nn.MaxPool2d(2, ceil_mode=True), (2, 5, 5), "ceil_mode"),
        (nn.AvgPool2d(2, divisor_override=3), (2, 4, 4), "divisor_override"),
        (nn.AdaptiveAvgPool2d(2), (2, 4, 4), "output size 1"),
        (nn.Flatten(0), (3,), "batch axis"),
        (nn.Softshrink(), (3,), "Softshrink"),
        (nn.ELU(alpha=0.5), (3,), "alpha=0.5"),
        (nn.BatchNorm1d(3, track_running_stats=False), (3,), "running statistics"),
    ],
)
def test_unsupported_settings(module: nn.Module, shape: tuple[int, ...], words: str) -> None:
    err = _error(module, torch.randn(4, *shape))
    assert len(err.items) == 1 and words in err.items[0], err.items


def test_batch_axis_ops_are_rejected() -> None:
    class Mean(nn.Module):
        def forward(self, x):  # type: ignore[no-untyped-def]
            return torch.cat([x, x], dim=0)

    err = _error(Mean(), torch.randn(4, 3))
    assert "batch axis" in err.items[0]


def test_attribute_spanning_the_batch_is_rejected() -> None:
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.s = nn.Parameter(torch.ones(4, 3))

        def forward(self, x):  # type: ignore[no-untyped-def]
            return x * self.s

    err = _error(Scale(), torch.randn(4, 3))
    assert "spans the batch axis" in err.items[0]


def test_options_are_checked() -> None:
    with pytest.raises(TypeError, match="unknown option"):
        hgqir.quantize_torch(nn.Linear(2, 2), torch.randn(4, 2), weights={"f": 3})
    with pytest.raises(TypeError, match="unknown quantizer option"):
        hgqir.quantize_torch(nn.Linear(2, 2), torch.randn(4, 2), weight={"bits": 3})
    with pytest.raises(ValueError, match="granularity"):
        hgqir.quantize_torch(nn.Linear(2, 2), torch.randn(4, 2), weight={"granularity": "row"})


def test_too_wide_table_input_names_the_table() -> None:
    net = nn.Sequential(nn.Linear(3, 3), nn.Sigmoid())
    with pytest.raises(hgqir.HgqirError, match="sigmoid table would be indexed by a 2[0-9]-bit input"):
        hgqir.from_torch(net, torch.randn(16, 3) * 1000, activation={"f": 12})


class WithSequential(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 3), nn.Softshrink(), nn.Linear(3, 3))  # the line reported

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_a_layer_inside_nn_sequential_points_at_its_definition() -> None:
    import inspect

    err = _error(WithSequential(), torch.randn(2, 3))
    (item,) = err.items
    lines, start = inspect.getsourcelines(WithSequential)
    want = start + next(n for n, line in enumerate(lines) if "the line reported" in line)
    assert item.startswith("body.1 (Softshrink)") and item.endswith(f"{THIS_FILE}:{want}"), item
    bare = _error(nn.Sequential(nn.Linear(3, 3), nn.Softshrink()), torch.randn(2, 3))
    assert "no source line recorded" in bare.items[0], bare.items
