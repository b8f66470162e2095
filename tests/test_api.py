import kmquant


def test_dir_is_exactly_all():
    assert sorted(dir(kmquant)) == sorted(kmquant.__all__)


def test_every_public_name_resolves_and_is_documented():
    for name in kmquant.__all__:
        value = getattr(kmquant, name)
        if name != "__version__":
            assert value.__doc__, f"{name} has no docstring"


def test_version_is_a_string():
    assert isinstance(kmquant.__version__, str) and kmquant.__version__.count(".") == 2
