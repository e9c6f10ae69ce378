"""Key files (0600, versioned) and material item numbers."""

import os
import stat

import pytest

from quire import keys
from quire.catalogue import parse_item
from quire.errors import UnknownFormat


def test_key_file_is_created_0600_and_never_overwritten(tmp_path):
    path = tmp_path / "keys" / "k.key"
    key = keys.create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert keys.load_key_file(path).encode() == key.encode()
    with pytest.raises(FileExistsError):
        keys.create_key_file(path)


def test_key_readable_by_others_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "k.key"
    keys.create_key_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(keys.KeyFileError, match="chmod 600"):
        keys.load_key_file(path)


def test_key_file_of_unknown_format_is_refused(tmp_path):
    path = tmp_path / "k.key"
    path.write_text("quire-ed25519-key/9\n00\n")
    os.chmod(path, 0o600)
    with pytest.raises(UnknownFormat):
        keys.load_key_file(path)


@pytest.mark.parametrize("text,category,seq", [("1-1", "1", 1), ("4-1-3", "4-1", 3), ("9-4-12", "9-4", 12),
                                               ("10-2", "10", 2)])
def test_item_numbers_parse(text, category, seq):
    item = parse_item(text)
    assert (item.category, item.seq, str(item)) == (category, seq, text)


@pytest.mark.parametrize("text,hint", [("4-2", "4-1-2"), ("11-1", "ten"), ("1-1-1", "no sub"),
                                       ("9-5-1", "does not exist"), ("abc", "类-序"), ("3-0", "start at 1")])
def test_bad_item_numbers_say_what_is_wrong(text, hint):
    with pytest.raises(ValueError, match=hint):
        parse_item(text)
