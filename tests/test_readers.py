import errno
import json
import os

import pytest
from helpers import write_image, write_text, write_truncated_jpeg

from visnet.data.readers import detect_layout, load_dataset, parse_spec
from visnet.data.records import EmptyDatasetError

STYLES = """id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName
1,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt
2,Women,Apparel,Topwear,Tops,Pink,Summer,2012,Casual,Boss Men Perfume, After Shave Balm and Shower Gel Set
3,Women,Apparel,Bottomwear,Shorts,Pink,Summer,2011,Sports,"Nike Women's EM Tempo 3.5"" Pink Short"
4,Men,Apparel,Topwear,,Blue,Fall,2011,Casual,No Label Shirt
5,Men,Footwear,Shoes,Casual Shoes,White,Fall,2011,Casual,Shoe Without A Photo
6,Men,Apparel,Topwear,Shirts,White,Fall,2011,Casual,Broken Photo Shirt
7,Men
"""


@pytest.fixture
def kaggle(tmp_path):
    (tmp_path / "styles.csv").write_text(STYLES, encoding="utf-8")
    for i in (1, 2, 3, 4):
        write_image(tmp_path / "images" / f"{i}.jpg", fmt="JPEG")
    write_truncated_jpeg(tmp_path / "images" / "6.jpg")
    return str(tmp_path)


def test_kaggle_reader_keeps_comma_names_and_skips_bad_rows(kaggle):
    dataset = load_dataset(f"kaggle:{kaggle}")
    assert dataset.ids == ["1", "2", "3"]
    assert dataset.labels == ["Shirts", "Tops", "Shorts"]
    assert dataset[1].text == "Boss Men Perfume, After Shave Balm and Shower Gel Set"
    assert dataset[2].text == 'Nike Women\'s EM Tempo 3.5" Pink Short'
    assert dataset[0].meta["baseColour"] == "Navy Blue"
    assert dataset[0].path == os.path.join(kaggle, "images", "1.jpg")
    assert dataset.report.counts() == {
        "malformed CSV row": 1, "empty articleType": 1, "missing file": 1, "corrupt image": 1,
    }


def test_kaggle_label_column_is_selectable_and_checked(kaggle):
    dataset = load_dataset(kaggle, label="masterCategory", text_columns=("baseColour", "productDisplayName"))
    assert dataset.labels == ["Apparel", "Apparel", "Apparel", "Apparel"]
    assert dataset[0].text == "Navy Blue Turtle Check Men Navy Blue Shirt"
    with pytest.raises(ValueError, match=r"Unknown label column 'colour' .* Available columns: id, gender"):
        load_dataset(kaggle, label="colour")


def test_inshop_reader(tmp_path):
    rows = [
        ("img/WOMEN/Dresses/id_00000002/02_1_front.jpg", "id_00000002", "train"),
        ("img/WOMEN/Dresses/id_00000002/02_2_side.jpg", "id_00000002", "query"),
        ("img/MEN/Denim/id_00000080/01_1_front.jpg", "id_00000080", "gallery"),
        ("img/MEN/Denim/id_00000080/01_2_side.jpg", "id_00000080", "gallery"),
    ]
    lines = [str(len(rows)), "image_name item_id evaluation_status"] + [" ".join(r) for r in rows]
    lines.append("img/broken/row.jpg only_two")
    (tmp_path / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    for name, _, _ in rows[:3]:
        write_image(tmp_path / "Img" / name)
    dataset = load_dataset(str(tmp_path))
    assert [r.split for r in dataset] == ["train", "query", "gallery"]
    assert dataset.labels == ["id_00000002", "id_00000002", "id_00000080"]
    assert dataset[0].item_id == "id_00000002"
    assert dataset[2].meta == {"gender": "MEN", "category": "Denim"}
    assert dataset.report.counts() == {"malformed partition row": 1, "missing file": 1}


def test_street2shop_reader(tmp_path):
    json_dir = tmp_path / "json"
    json_dir.mkdir()
    bbox = {"left": 1, "top": 2, "width": 10, "height": 12}
    (json_dir / "train_pairs_dresses.json").write_text(json.dumps(
        [{"photo": 11, "product": 100, "bbox": bbox}, {"photo": 12, "product": 101, "bbox": bbox}]))
    (json_dir / "test_pairs_dresses.json").write_text(json.dumps([{"photo": 13, "product": 100}, {"photo": 14}]))
    (json_dir / "retrieval_dresses.json").write_text(json.dumps(
        [{"photo": 21, "product": 100}, {"photo": 22, "product": 101}]))
    (json_dir / "notes.json").write_text("{}")
    for photo in (11, 12, 13, 21):
        write_image(tmp_path / "images" / f"{photo}.jpg", fmt="JPEG")
    write_image(tmp_path / "images" / "22.png")
    dataset = load_dataset(str(tmp_path))
    by_id = {r.id: r for r in dataset}
    assert set(by_id) == {"street:11:100", "street:12:101", "street:13:100", "shop:21:100", "shop:22:101"}
    assert by_id["street:13:100"].split == "query" and by_id["street:11:100"].split == "train"
    assert by_id["shop:22:101"].split == "gallery" and by_id["shop:22:101"].path.endswith("22.png")
    assert by_id["street:11:100"].meta == {"category": "dresses", "domain": "street", "bbox": bbox}
    assert by_id["shop:21:100"].label == by_id["street:13:100"].label == "100"
    assert dataset.report.counts() == {"malformed JSON entry": 1}


def test_folder_reader(tmp_path):
    write_image(tmp_path / "dress" / "a.jpg", fmt="JPEG")
    write_image(tmp_path / "dress" / "b.png")
    write_image(tmp_path / "shirt" / "c.JPG", fmt="JPEG")
    write_text(tmp_path / "shirt" / "notes.txt")
    write_text(tmp_path / "shirt" / "fake.jpg")
    write_text(tmp_path / ".hidden" / "x.jpg")
    (tmp_path / "empty").mkdir()
    dataset = load_dataset(f"folder:{tmp_path}")
    assert dataset.ids == ["dress/a.jpg", "dress/b.png", "shirt/c.JPG"]
    assert dataset.labels == ["dress", "dress", "shirt"]
    assert dataset.report.counts() == {
        "not an image file (extension)": 1, "empty class folder": 1, "not an image": 1,
    }
    items = load_dataset(f"folder:{tmp_path}", by="item")
    assert items[0].item_id == "dress"


def test_csv_manifest_reader(tmp_path):
    write_image(tmp_path / "imgs" / "a.jpg", fmt="JPEG")
    write_image(tmp_path / "imgs" / "b.jpg", fmt="JPEG")
    absolute = write_image(tmp_path / "elsewhere" / "c.png")
    (tmp_path / "list.csv").write_text(
        "path,label,text,split,colour\n"
        "imgs/a.jpg,dress,red dress,train,red\n"
        "imgs/b.jpg,shirt,\"blue shirt, slim\",query,blue\n"
        f"{absolute},shirt,,gallery,white\n"
        "imgs/c.jpg,,no label,train,red\n"
        "imgs/d.jpg,shirt,bad split,validation,red\n"
        "imgs/missing.jpg,shirt,,train,red\n"
    )
    dataset = load_dataset(str(tmp_path / "list.csv"))
    assert dataset.labels == ["dress", "shirt", "shirt"]
    assert dataset.texts == ["red dress", "blue shirt, slim", None]
    assert [r.split for r in dataset] == ["train", "query", "gallery"]
    assert dataset[0].meta == {"colour": "red"}
    assert dataset[0].path == os.path.join(str(tmp_path), "imgs", "a.jpg")
    assert dataset.report.counts() == {"empty label": 1, "unknown split": 1, "missing file": 1}
    with pytest.raises(ValueError, match="Unknown label column 'type'"):
        load_dataset(f"csv:{tmp_path / 'list.csv'}", label="type")


def test_benchmark_reader_and_protocol_splits(catalogue):
    from visnet.data.protocol import Protocol

    dataset = load_dataset(catalogue)
    protocol = Protocol.load(os.path.join(catalogue, "protocol.json"))
    assert protocol.label == "type"
    assert len(dataset) == 12 * 9 and len(dataset.classes) == 12
    assert dataset[0].text.endswith("t-shirt")
    train, test = protocol.closed_set(dataset)
    assert len(train) + len(test) == len(dataset)
    splits = protocol.open_set(dataset)
    assert set(splits.base.classes).isdisjoint(protocol.novel_classes)
    assert set(splits.support.classes) == set(protocol.novel_classes)
    assert sorted(splits.support.ids + splits.query.ids) == sorted(splits.pool.ids)


def test_layout_detection_and_spec_errors(tmp_path, kaggle, catalogue):
    assert detect_layout(kaggle) == "kaggle"
    assert detect_layout(catalogue) == "benchmark"
    assert parse_spec(f"folder:{kaggle}") == ("folder", kaggle)
    with pytest.raises(FileNotFoundError, match="Data path not found"):
        load_dataset(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="Unknown dataset layout 'imagenet'"):
        load_dataset("imagenet:/data")
    with pytest.raises(ValueError, match="does not take labels"):
        load_dataset(kaggle, labels="x")
    (tmp_path / "loose.txt").write_text("x")
    with pytest.raises(ValueError, match="Cannot tell the layout of the file"):
        load_dataset(str(tmp_path / "loose.txt"))


def test_a_dataset_with_only_bad_images_is_a_clear_error(tmp_path):
    write_text(tmp_path / "dress" / "a.jpg")
    write_truncated_jpeg(tmp_path / "dress" / "b.jpg")
    with pytest.raises(EmptyDatasetError, match=r"(?s)No usable image records in folder:.*not an image.*corrupt image"):
        load_dataset(f"folder:{tmp_path}")


def test_bytes_that_are_not_utf8_cost_only_their_row(tmp_path):
    rows = [f"img{i}.jpg,dress,plain text {i}" for i in range(3000)]
    rows[2500] = "img2500.jpg,dress,caf\xe9 cr\xe8me"  # Windows-1252 bytes deep in the file
    data = ("path,label,text\n" + "\n".join(rows) + "\n").encode("utf-8")
    data = data.replace("caf\xe9 cr\xe8me".encode(), "caf\xe9 cr\xe8me".encode("cp1252"))
    (tmp_path / "list.csv").write_bytes(data)
    dataset = load_dataset(str(tmp_path / "list.csv"), check="none")
    assert len(dataset) == 3000
    assert dataset.select(["img2500.jpg"])[0].text == "café crème"
    assert dataset.report.counts() == {"row not in UTF-8 (read as Windows-1252)": 1}


def test_repeated_ids_are_kept_once_and_counted(tmp_path):
    write_image(tmp_path / "a.jpg", fmt="JPEG")
    (tmp_path / "list.csv").write_text("path,label\na.jpg,shirt\na.jpg,dress\n")
    dataset = load_dataset(str(tmp_path / "list.csv"))
    assert dataset.labels == ["shirt"]
    assert dataset.report.counts() == {"duplicate id (first kept)": 1}


def test_a_file_named_json_is_not_a_street2shop_folder(tmp_path):
    (tmp_path / "json").write_text("{}")
    write_image(tmp_path / "dress" / "a.png")
    assert detect_layout(str(tmp_path)) == "folder"


# -- entries that are not image files: reported by the folder reader as the CSV reader reports them --

LOOP = f"unreadable file ({os.strerror(errno.ELOOP)})"  # how the CSV reader words a symlink loop


def _bad_entries(folder):
    """A symlink loop, a broken symlink and a directory named like an image, beside one good image."""
    write_image(folder / "good.jpg", fmt="JPEG")
    os.symlink("loop.jpg", folder / "loop.jpg")  # points to itself
    os.symlink("nowhere.jpg", folder / "broken.jpg")
    (folder / "x.jpg").mkdir()
    return ["loop.jpg", "broken.jpg", "x.jpg"]


def test_folder_reader_reports_a_symlink_loop_as_the_csv_reader_does(tmp_path):
    _bad_entries(tmp_path / "dress")
    (tmp_path / "list.csv").write_text("path,label\ndress/good.jpg,dress\ndress/loop.jpg,dress\n")
    by_csv = load_dataset(f"csv:{tmp_path / 'list.csv'}").report
    folder = load_dataset(f"folder:{tmp_path}")
    assert folder.ids == ["dress/good.jpg"]
    assert by_csv.counts()[LOOP] == 1
    assert folder.report.counts()[LOOP] == 1
    assert folder.report.paths(LOOP) == [str(tmp_path / "dress" / "loop.jpg")]


def test_folder_reader_reports_a_broken_symlink_as_the_csv_reader_does(tmp_path):
    _bad_entries(tmp_path / "dress")
    (tmp_path / "list.csv").write_text("path,label\ndress/good.jpg,dress\ndress/broken.jpg,dress\n")
    by_csv = load_dataset(f"csv:{tmp_path / 'list.csv'}").report
    folder = load_dataset(f"folder:{tmp_path}").report
    assert by_csv.counts()["missing file"] == folder.counts()["missing file"] == 1
    assert folder.paths("missing file") == [str(tmp_path / "dress" / "broken.jpg")]


def test_folder_reader_reports_a_directory_named_like_an_image_as_the_csv_reader_does(tmp_path):
    _bad_entries(tmp_path / "dress")
    (tmp_path / "dress" / "deeper").mkdir()  # a plain deeper folder stays ignored
    (tmp_path / "list.csv").write_text("path,label\ndress/good.jpg,dress\ndress/x.jpg,dress\n")
    by_csv = load_dataset(f"csv:{tmp_path / 'list.csv'}").report
    folder = load_dataset(f"folder:{tmp_path}").report
    assert by_csv.counts()["not a file"] == folder.counts()["not a file"] == 1
    assert folder.paths("not a file") == [str(tmp_path / "dress" / "x.jpg")]


def test_folder_reader_reports_the_three_entries_exactly_as_the_csv_reader(tmp_path):
    names = _bad_entries(tmp_path / "dress")
    rows = "".join(f"dress/{name},dress\n" for name in ["good.jpg", *names])
    (tmp_path / "list.csv").write_text("path,label\n" + rows)
    for check in ("decode", "header", "exists"):
        by_csv = load_dataset(f"csv:{tmp_path / 'list.csv'}", check=check)
        folder = load_dataset(f"folder:{tmp_path}", check=check)
        assert folder.ids == ["dress/good.jpg"] and len(by_csv) == 1
        assert folder.report.counts() == by_csv.report.counts() == {LOOP: 1, "missing file": 1, "not a file": 1}
    # Listing a folder needs no image check: the entries are reported even with check="none".
    assert load_dataset(f"folder:{tmp_path}", check="none").report.counts() == {
        LOOP: 1, "missing file": 1, "not a file": 1}


def test_folder_reader_reports_directory_symlinks_to_a_parent_and_does_not_follow_them(tmp_path):
    write_image(tmp_path / "dress" / "a.jpg", fmt="JPEG")
    os.symlink("..", tmp_path / "dress" / "up")  # to the root
    os.symlink(".", tmp_path / "dress" / "same.jpg")  # to its own folder
    os.symlink(".", tmp_path / "again")  # a class folder that is the root itself
    os.symlink("gone", tmp_path / "lost")  # a class folder that is a broken symlink
    dataset = load_dataset(f"folder:{tmp_path}")
    assert dataset.ids == ["dress/a.jpg"]
    assert dataset.report.counts() == {LOOP: 3, "missing file": 1}
    assert sorted(dataset.report.paths(LOOP)) == sorted(
        str(p) for p in (tmp_path / "again", tmp_path / "dress" / "same.jpg", tmp_path / "dress" / "up"))
    assert detect_layout(str(tmp_path)) == "folder"
