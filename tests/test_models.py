import pytest
import torch
from torch import nn

from mnistcli.errors import OptionError
from mnistcli.models import DEFAULT_MODEL, count_parameters, create_model, model_names


@pytest.mark.parametrize("name", model_names())
def test_every_model_maps_a_batch_to_ten_logits(name):
    model = create_model(name)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_report_cnn_is_exactly_the_reports_network():
    m = create_model("report-cnn")
    convs = [layer for layer in m.modules() if isinstance(layer, nn.Conv2d)]
    linears = [layer for layer in m.modules() if isinstance(layer, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 10, (5, 5)), (10, 20, (5, 5))]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(320, 50), (50, 10)]
    # As printed: no activation between the two linear layers.
    assert [type(layer) for layer in m.fc] == [nn.Linear, nn.Linear]
    assert count_parameters(m) == 21840


def test_default_model_has_batch_norm():
    assert any(isinstance(layer, nn.BatchNorm2d) for layer in create_model(DEFAULT_MODEL).modules())


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(OptionError, match="report-cnn"):
        create_model("resnet9000")


def test_model_args_are_passed():
    assert count_parameters(create_model("fc", hidden=[32])) == 784 * 32 + 32 + 32 * 10 + 10


def test_report_cnn_computes_what_the_printed_order_computes():
    torch.manual_seed(0)
    m = create_model("report-cnn")
    x = torch.randn(4, 1, 28, 28)
    printed = m.fc(m.conv2(m.conv1(x)).flatten(1))  # conv -> ReLU -> pool, as the Sequentials list them
    assert torch.allclose(m(x), printed, atol=1e-6)
