"""The Python API as the README shows it."""


import pytest


def test_public_names_resolve_lazily():
    import redlat

    for name in redlat.__all__:
        assert getattr(redlat, name) is not None
    with pytest.raises(AttributeError):
        redlat.no_such_thing  # noqa: B018


