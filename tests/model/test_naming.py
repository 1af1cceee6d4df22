from __future__ import annotations

import pytest

from datastore.errors import InvalidName
from datastore.model.naming import NAME_RULE, derive_name, validate_name


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("s3://ryft-public-sample-data/esRedditJson/", "esredditjson"),
        ("s3://ryft-public-sample-data/esRedditJson", "esredditjson"),
        ("s3://my-bucket", "my-bucket"),
        ("s3://my-bucket/", "my-bucket"),
        ("https://host/subfolder/trainingSet.tar.gz", "trainingset"),
        ("https://host/a/data.TGZ?x=1#frag", "data"),
        ("http://host/a/b.zip", "b"),
        ("http://host/a/b.tar", "b"),
        ("./imagenet_folder/", "imagenet_folder"),
        ("/data/My Data Set", "mydataset"),
        ("/data/Crème Brûlée", "cremebrulee"),
        ("/data/photos (2024)", "photos-2024"),
        ("/data/file.CSV", "file.csv"),
    ],
)
def test_derive_name(source: str, expected: str) -> None:
    assert derive_name(source) == expected


@pytest.mark.parametrize("source", ["/data/日本語", "/", "s3://b/...", "/data/___"])
def test_derive_name_fails_with_hint_to_pass_name(source: str) -> None:
    with pytest.raises(InvalidName, match="pass --name"):
        derive_name(source)


@pytest.mark.parametrize(("source", "length", "cut"), [
    ("/data/" + "x" * 65, 65, "x" * 64),
    ("s3://bucket/" + "Long Name " * 10 + "/", 80, "longname" * 8),
    ("https://host/" + "a" * 63 + "-b.tar.gz", 65, "a" * 63),  # the cut ends on '-': trimmed like any end
])
def test_a_derived_name_longer_than_64_is_refused_with_the_cut_name_to_pass(source: str, length: int,
                                                                             cut: str) -> None:
    with pytest.raises(InvalidName) as info:
        derive_name(source)
    line = str(info.value)
    assert line == (f"the name derived from {source!r} would be {length} characters, longer than the limit of 64: "
                    f"pass --name {cut}")
    assert "\n" not in line and line.endswith(f"--name {cut}")
    assert validate_name(cut) == cut  # what it suggests is accepted as is


def test_a_derived_name_of_exactly_64_is_kept() -> None:
    assert derive_name("/data/" + "y" * 64) == "y" * 64


@pytest.mark.parametrize("name", ["imagenet", "my-training-data", "a", "v1.2_x", "9lives", "a" * 64])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Imagenet", "my data", "-lead", ".hidden", "a/b", "a" * 65, "ünï"])
def test_invalid_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidName) as info:
        validate_name(name)
    assert str(info.value) == f"invalid datastore name {name!r}: {NAME_RULE}"
