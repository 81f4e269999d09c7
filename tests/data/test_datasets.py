"""Dataset names and paths resolve to the right loader; item metadata attaches; describe."""

from __future__ import annotations

from pathlib import Path

import pytest

from recforge.data.datasets import SyntheticSpec, describe, load_dataset
from recforge.errors import DataError


def test_synthetic_by_name() -> None:
    inter = load_dataset("synthetic", synthetic=SyntheticSpec(40, 30, 300, seed=1))
    assert (inter.n_users, inter.n_items) == (40, 30)


def test_builtin_and_folder(ml100k_dir: Path) -> None:
    by_name = load_dataset("movielens-100k", data_dir=ml100k_dir)
    by_folder = load_dataset(str(ml100k_dir))
    assert by_name.fingerprint() == by_folder.fingerprint()


def test_file_with_columns_and_items(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("who,what,stars\nu1,m1,4\nu2,m2,5\nu1,m2,3\n")
    items = tmp_path / "items.tsv"
    items.write_text("item_id\ttitle\tgenres\n"
                     "m1\tHeat (1995)\tAction|Crime\nm2\tUp (2009)\tComedy\n")
    inter = load_dataset(str(log), columns={"user": "who", "item": "what", "rating": "stars"},
                         items_file=items)
    assert inter.item_titles() == {"m1": "Heat (1995)", "m2": "Up (2009)"}
    assert inter.item_features is not None
    assert inter.item_features.loc["m1", "genre_Crime"] == 1


def test_items_file_must_match(tmp_path: Path) -> None:
    log = tmp_path / "log.tsv"
    log.write_text("1\t1\n2\t2\n")
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n99,Nothing\n")
    with pytest.raises(DataError, match="none of its item IDs"):
        load_dataset(str(log), items_file=items)


def test_unknown_dataset_and_misplaced_options(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_dataset("nope")
    with pytest.raises(DataError, match="--columns"):
        load_dataset("synthetic", columns={"user": "a"})
    log = tmp_path / "log.tsv"
    log.write_text("1\t1\n")
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset(str(log), data_dir=tmp_path)
    with pytest.raises(DataError, match="no MovieLens files"):
        load_dataset(str(tmp_path))


def test_describe(tmp_path: Path) -> None:
    log = tmp_path / "log.tsv"
    log.write_text("1\t1\t4\t0\n1\t2\t5\t86400\n2\t1\t4\t172800\n")
    facts = describe(load_dataset(str(log)))
    assert (facts["users"], facts["items"], facts["interactions"]) == (2, 2, 3)
    assert facts["density"] == 0.75
    assert facts["ratings"] == {"4": 2, "5": 1}
    assert facts["per_user"] == {"min": 1.0, "25%": 1.25, "50%": 1.5, "75%": 1.75, "max": 2.0}
    assert facts["time_span"] == {"start": "1970-01-01", "end": "1970-01-03"}
