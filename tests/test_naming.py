from __future__ import annotations

import pytest

from datastore.errors import InvalidName
from datastore.naming import NAME_RULE, derive_name, validate_name


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


@pytest.mark.parametrize("name", ["imagenet", "my-training-data", "a", "v1.2_x", "9lives", "a" * 64])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Imagenet", "my data", "-lead", ".hidden", "a/b", "a" * 65, "ünï"])
def test_invalid_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidName) as info:
        validate_name(name)
    assert NAME_RULE in str(info.value)
    assert repr(name) in str(info.value)
