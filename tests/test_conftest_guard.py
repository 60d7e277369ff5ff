import socket

import huggingface_hub.constants as hf_constants
import pytest


def test_hf_endpoint_is_the_local_hub(hub):
    assert hf_constants.ENDPOINT == hub.url
    assert hf_constants.ENDPOINT.startswith("http://127.0.0.1:")


def test_real_hub_is_unreachable_fast():
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("huggingface.co", 443)
