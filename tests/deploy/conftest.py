"""Fixtures of the deploy/ checks."""

import socket

import pytest


@pytest.fixture
def no_network(monkeypatch):
    """No socket of this process may connect: the checks are offline, and this proves it."""
    def refuse(*args, **kwargs):
        raise OSError("tests/deploy: the deploy checks run offline, yet something connected")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
