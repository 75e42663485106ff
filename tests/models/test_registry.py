"""Every registered model: output shape, finite outputs, a gradient on every parameter, input checks."""

import pytest
import torch

from lungxray.errors import ConfigError
from lungxray.models import create_model, get_spec, list_models


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("size,classes", [(32, ("COVID", "Normal", "Viral Pneumonia")), (48, ("COVID", "Normal", "Viral Pneumonia", "Lung_Opacity"))])
def test_forward_backward(name, size, classes):
    torch.manual_seed(0)
    model = create_model(name, input_size=size, classes=classes)
    x = torch.rand(2, 1, size, size)
    out = model(x)
    assert out.shape == (2, len(classes))
    assert torch.isfinite(out).all()
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing}"
    assert model.classes == classes
    assert model.spec.input_size == (size, size)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("shape", [(2, 1, 40, 32), (2, 3, 32, 32), (1, 32, 32)])
def test_wrong_input_shape_is_a_clear_error(name, shape):
    model = create_model(name, input_size=32)
    with pytest.raises(ValueError, match="expects input"):
        model(torch.rand(*shape))


def test_unknown_model_suggests_nearest():
    with pytest.raises(ConfigError, match="Did you mean 'cnn'"):
        create_model("cnnn")


def test_bad_builder_argument_is_config_error():
    with pytest.raises(ConfigError, match="bad arguments"):
        create_model("cnn", input_size=32, no_such_arg=1)


def test_spec_describes_model():
    spec = get_spec("mlp")
    assert spec.in_channels == 1 and spec.std > 0
    assert "Dense" in spec.description or "dense" in spec.description.lower()


def test_mlp_matches_original_architecture():
    model = create_model("mlp", input_size=32)
    widths = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [512, 256, 128, 3]
    drops = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.5, 0.5, 0.5]


def test_cnn_matches_original_architecture():
    model = create_model("cnn", input_size=64)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == 3
    dense = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert dense == [128, 64, 3]
    assert dense and model.body[1][2].in_features == 128 * 8 * 8
