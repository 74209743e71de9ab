"""Downloads and the published recipes end to end against a local HTTP server (no internet here).

Each source is served as a small archive in its real layout, filled with real sentences from
../shared/data (Multi30k for IWSLT's German/English, WMT newstest sets for the WMT tasks).
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile

import pytest

from hat_cli.data.dictionary import Dictionary
from hat_cli.data.download import Source, direct_url, download
from hat_cli.data.indexed import write_indexed
from hat_cli.data.prepare import prepare_task
from hat_cli.data.recipes import IWSLT_TEST_SETS, RECIPES
from hat_cli.core.errors import HatError
from tests._data_helpers import MULTI30K_RAW, SHARED_DATA, FileServer, require

NEWSTEST = SHARED_DATA / "wmt-newstest"


def _lines(path, n=None, skip=0):
    lines = gzip.decompress(require(path).read_bytes()).decode("utf-8").splitlines()
    return lines[skip : None if n is None else skip + n]


def _text(lines):
    return ("\n".join(lines) + "\n").encode("utf-8")


def _tar(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _sgm(lines, docid="doc"):
    body = [f'<doc docid="{docid}">'] + [f'<seg id="{i}">{line}</seg>' for i, line in enumerate(lines, 1)] + ["</doc>"]
    return _text(["<srcset>"] + body + ["</srcset>"])


# -- the download mechanics ------------------------------------------------------------------------------
PAYLOAD = bytes(range(256)) * 4000  # ~1 MB


def test_interrupted_transfer_resumes_with_a_range_request(tmp_path):
    server = FileServer()
    server.files["big.bin"] = PAYLOAD
    server.cut_after["big.bin"] = 300_000
    with server.running() as url:
        path = download(Source("http://example.invalid/big.bin", "big.bin", size=len(PAYLOAD)), tmp_path, mirror=url, backoff=0)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("big.bin", None), ("big.bin", "bytes=300000-")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin"]


def test_interrupted_transfer_resumes_in_a_later_run(tmp_path):
    import hashlib

    source = Source("http://example.invalid/big.bin", "big.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest())
    server = FileServer()
    server.files["big.bin"] = PAYLOAD
    server.cut_after["big.bin"] = 123_456
    with server.running() as url:
        with pytest.raises(HatError, match=f"{url}/big.bin.*resume"):
            download(source, tmp_path, mirror=url, retries=0)
        assert (tmp_path / "big.bin.part").stat().st_size == 123_456 and not (tmp_path / "big.bin").exists()
        download(source, tmp_path, mirror=url)
    assert (tmp_path / "big.bin").read_bytes() == PAYLOAD and not (tmp_path / "big.bin.part").exists()
    assert server.requests[-1] == ("big.bin", "bytes=123456-")


def test_checksum_mismatch_fails_cleanly(tmp_path):
    server = FileServer()
    server.files["x.tgz"] = PAYLOAD
    with server.running() as url:
        with pytest.raises(HatError, match=f"{url}/x.tgz.*sha256"):
            download(Source("http://example.invalid/x.tgz", "x.tgz", sha256="0" * 64), tmp_path, mirror=url)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_and_web_page_are_clear_errors(tmp_path):
    server = FileServer()
    server.files["page.tgz"] = b"<html>sign in</html>"
    server.content_types["page.tgz"] = "text/html; charset=utf-8"
    with server.running() as url:
        with pytest.raises(HatError, match=f"{url}/nothere.tgz failed: HTTP 404"):
            download(Source("http://example.invalid/nothere.tgz", "nothere.tgz"), tmp_path, mirror=url)
        with pytest.raises(HatError, match="web page instead of the file"):
            download(Source("http://example.invalid/page.tgz", "page.tgz"), tmp_path, mirror=url)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_host_names_the_url(tmp_path):
    with pytest.raises(HatError, match="http://127.0.0.1:9/f.tgz"):
        download(Source("http://127.0.0.1:9/f.tgz", "f.tgz"), tmp_path, retries=0, mirror="")


def test_alternate_url_is_tried_when_the_published_one_fails(tmp_path):
    server = FileServer()
    server.files["f.tgz"] = PAYLOAD
    with server.running() as url:
        source = Source(f"{url}/gone/f.tgz", "f.tgz", alternates=(f"{url}/f.tgz",))
        assert download(source, tmp_path, mirror="").read_bytes() == PAYLOAD
        with pytest.raises(HatError, match=r"gone/f.tgz failed: HTTP 404.*also tried: .*gone2/f.tgz"):
            download(Source(f"{url}/gone2/f.tgz", "g.tgz", alternates=(f"{url}/gone/f.tgz",)), tmp_path, mirror="")
    assert [name for name, _ in server.requests] == ["gone/f.tgz", "f.tgz", "gone2/f.tgz", "gone/f.tgz"]


def test_dropbox_links_are_made_direct():
    assert direct_url("https://www.dropbox.com/s/abc/x.tgz?dl=0") == "https://www.dropbox.com/s/abc/x.tgz?dl=1"
    assert direct_url("http://statmt.org/wmt14/test-full.tgz") == "http://statmt.org/wmt14/test-full.tgz"
    assert direct_url(RECIPES["wmt14.en-de"].sources[0].url).endswith("id=0B_bZck-ksdkpM25jRUN2X2UxMm8&confirm=t")


# -- the recipes, each from a server holding its sources in the real layout ------------------------------
def _serve_and_prepare(tmp_path, task, files, **kwargs):
    server = FileServer()
    server.files.update(files)
    with server.running() as url:
        summary = prepare_task(task, data_dir=tmp_path / task, mirror=url, workers=1, **kwargs)
    missing = {s.filename for s in RECIPES[task].sources} - {name for name, _ in server.requests}
    assert not missing, f"sources never requested: {missing}"
    assert summary == json.loads((tmp_path / task / "summary.json").read_text())
    return summary, server


def test_iwslt14_recipe_from_the_wit3_archive(tmp_path):
    de, en = _lines(MULTI30K_RAW / "train.de.gz", 460), _lines(MULTI30K_RAW / "train.en.gz", 460)
    tags = ["<url>http://www.ted.com/talks/x.html</url>", "<keywords>talks</keywords>", "<talkid>1</talkid>"]
    members = {
        "de-en/train.tags.de-en.de": _text(tags + ["<title>Ein Vortrag</title>"] + de),
        "de-en/train.tags.de-en.en": _text(tags + ["<title>A talk</title>"] + en),
    }
    test_de, test_en = _lines(MULTI30K_RAW / "val.de.gz", 50), _lines(MULTI30K_RAW / "val.en.gz", 50)
    for k, name in enumerate(IWSLT_TEST_SETS):
        members[f"de-en/{name}.de-en.de.xml"] = _sgm(test_de[10 * k : 10 * k + 10])
        members[f"de-en/{name}.de-en.en.xml"] = _sgm(test_en[10 * k : 10 * k + 10])
    summary, _ = _serve_and_prepare(tmp_path, "iwslt14.de-en", {"de-en.tgz": _tar(members)})
    splits = summary["splits"]
    kept = splits["train"]["sentences"] + splits["valid"]["sentences"]
    assert 440 <= kept <= 461 and splits["valid"]["sentences"] == kept // 23  # every 23rd line held out
    assert splits["test"]["sentences"] == 50
    out = tmp_path / "iwslt14.de-en"
    assert not summary["joined_dictionary"] and (out / "dict.de.txt").read_bytes() != (out / "dict.en.txt").read_bytes()
    first = (out / "text" / "train.en").read_text(encoding="utf-8").splitlines()[0]
    assert first.replace("@@ ", "") == "a talk"  # <title> tags removed, lowercased, url/keywords lines dropped
    assert (out / "code").read_text().startswith("#version: 0.2\n")
    assert (out / "orig" / "de-en.tgz").is_file()


def test_wmt14_en_de_recipe_from_googles_archive(tmp_path):
    en, de = _lines(NEWSTEST / "en-de" / "newstest2012.en.gz", 300), _lines(NEWSTEST / "en-de" / "newstest2012.de.gz", 300)
    members = {}
    for name, (a, b) in {"train.tok.clean.bpe.32000": (en[:200], de[:200]), "newstest2013.tok.bpe.32000": (en[200:250], de[200:250]),
                         "newstest2014.tok.bpe.32000": (en[250:], de[250:])}.items():
        members[f"{name}.en"], members[f"{name}.de"] = _text(a), _text(b)
    members["bpe.32000"] = b"#version: 0.2\n"
    summary, _ = _serve_and_prepare(tmp_path, "wmt14.en-de", {"wmt16_en_de.tar.gz": _tar(members)})
    assert {k: v["sentences"] for k, v in summary["splits"].items()} == {"train": 200, "valid": 50, "test": 50}
    out = tmp_path / "wmt14.en-de"
    assert (out / "dict.en.txt").read_bytes() == (out / "dict.de.txt").read_bytes()  # joined


def _published_dict(lines):
    d = Dictionary.build(lines[:40])
    buf = d.to_text().encode("utf-8")
    return d, buf


def test_wmt14_en_fr_recipe_from_statmt_archives(tmp_path):
    en = _lines(NEWSTEST / "en-fr" / "newstest2012.en.gz", 500)
    fr = _lines(NEWSTEST / "en-fr" / "newstest2012.fr.gz", 500)
    test_en, test_fr = _lines(NEWSTEST / "en-fr" / "newstest2014.en.gz", 30), _lines(NEWSTEST / "en-fr" / "newstest2014.fr.gz", 30)
    part = lambda k: slice(100 * k, 100 * k + 100)  # noqa: E731
    files = {
        "training-parallel-europarl-v7.tgz": _tar({"training/europarl-v7.fr-en.en": _text(en[part(0)]), "training/europarl-v7.fr-en.fr": _text(fr[part(0)])}),
        "training-parallel-commoncrawl.tgz": _tar({"commoncrawl.fr-en.en": _text(en[part(1)]), "commoncrawl.fr-en.fr": _text(fr[part(1)])}),
        "training-parallel-un.tgz": _tar({"un/undoc.2000.fr-en.en": _text(en[part(2)]), "un/undoc.2000.fr-en.fr": _text(fr[part(2)])}),
        "training-parallel-nc-v9.tgz": _tar({"training/news-commentary-v9.fr-en.en": _text(en[part(3)]), "training/news-commentary-v9.fr-en.fr": _text(fr[part(3)])}),
        "training-giga-fren.tar": _tar({"giga-fren.release2.fixed.en.gz": gzip.compress(_text(en[part(4)])),
                                        "giga-fren.release2.fixed.fr.gz": gzip.compress(_text(fr[part(4)]))}, mode="w"),
        "test-full.tgz": _tar({"test-full/newstest2014-fren-src.en.sgm": _sgm(test_en), "test-full/newstest2014-fren-ref.fr.sgm": _sgm(test_fr)}),
    }
    _, dict_bytes = _published_dict(en)
    files["wmt14enfr_dict.txt"] = dict_bytes
    summary, _ = _serve_and_prepare(tmp_path, "wmt14.en-fr", files)
    splits = summary["splits"]
    assert splits["test"]["sentences"] == 30  # the test set is never cleaned
    assert splits["train"]["sentences"] + splits["valid"]["sentences"] <= 500 and splits["valid"]["sentences"] == 0  # 500 < 1333
    out = tmp_path / "wmt14.en-fr"
    # the authors' dictionary is used as the joined dictionary, byte for byte
    assert (out / "dict.en.txt").read_bytes() == dict_bytes == (out / "dict.fr.txt").read_bytes()
    assert " @-@ " in (out / "text" / "train.en").read_text(encoding="utf-8")  # aggressive hyphen splitting


def test_wmt19_en_de_recipe_from_its_sources(tmp_path):
    en = _lines(NEWSTEST / "en-de" / "newstest2015.en.gz", 360)
    de = _lines(NEWSTEST / "en-de" / "newstest2015.de.gz", 360)
    chunk = lambda k: slice(60 * k, 60 * k + 60)  # noqa: E731
    tsv = lambda a, b: _text([f"{x}\t{y}" for x, y in zip(a, b)])  # noqa: E731
    files = {
        "europarl-v9.de-en.tsv.gz": gzip.compress(tsv(de[chunk(0)], en[chunk(0)])),
        "en-de.bicleaner07.txt.gz": gzip.compress(tsv(en[chunk(1)], de[chunk(1)])),  # English first here
        "training-parallel-commoncrawl.tgz": _tar({"commoncrawl.de-en.en": _text(en[chunk(2)]), "commoncrawl.de-en.de": _text(de[chunk(2)])}),
        "news-commentary-v14.de-en.tsv.gz": gzip.compress(tsv(de[chunk(3)], en[chunk(3)])),
        "wikititles-v1.de-en.tsv.gz": gzip.compress(tsv(de[chunk(4)], en[chunk(4)])),
        "rapid2019.de-en.zip": _zip({"rapid2019.de-en.en": _text(en[chunk(5)]), "rapid2019.de-en.de": _text(de[chunk(5)])}),
        "dev.tgz": _tar({
            "dev/newstest2017-ende-src.en.sgm": _sgm(_lines(NEWSTEST / "en-de" / "newstest2017.en.gz", 20)),
            "dev/newstest2017-ende-ref.de.sgm": _sgm(_lines(NEWSTEST / "en-de" / "newstest2017.de.gz", 20)),
            "dev/newstest2018-ende-src.en.sgm": _sgm(_lines(NEWSTEST / "en-de" / "newstest2018.en.gz", 25)),
            "dev/newstest2018-ende-ref.de.sgm": _sgm(_lines(NEWSTEST / "en-de" / "newstest2018.de.gz", 25)),
        }),
    }
    _, dict_bytes = _published_dict(en)
    files["wmt19ende_dict.txt"] = dict_bytes
    summary, _ = _serve_and_prepare(tmp_path, "wmt19.en-de", files)
    splits = summary["splits"]
    assert splits["test"]["sentences"] == 25 and splits["valid"]["sentences"] <= 20
    assert 300 <= splits["train"]["sentences"] <= 360  # all training text, minus cleaning
    out = tmp_path / "wmt19.en-de"
    # every corpus's English column ended up on the English side (bicleaner has English first, the rest German)
    words = {lang: set((out / "text" / f"train.{lang}").read_text(encoding="utf-8").replace("@@ ", "").split()) for lang in ("en", "de")}
    for i in (0, 60, 180, 240):
        assert {w for w in en[i].split() if w.isalpha()} <= words["en"]
        assert {w for w in de[i].split() if w.isalpha()} <= words["de"]
    assert (out / "dict.de.txt").read_bytes() == dict_bytes


def _multi30k_files():
    return {f"{name}.{lang}.gz": require(MULTI30K_RAW / f"{name}.{lang}.gz").read_bytes()
            for name in ("train", "val", "test_2016_flickr") for lang in ("de", "en")}


def test_multi30k_download_with_a_corrupted_file_fails_cleanly(tmp_path):
    # The registry pins sha256 and size of the six files; a changed byte is caught and nothing half-done stays.
    files = _multi30k_files()
    data = bytearray(files["train.en.gz"])
    data[1000] ^= 0xFF
    files["train.en.gz"] = bytes(data)
    server = FileServer()
    server.files.update(files)
    with server.running() as url:
        with pytest.raises(HatError, match=f"{url}/train.en.gz has sha256"):
            prepare_task("multi30k.de-en", data_dir=tmp_path / "m", mirror=url, workers=1)
    assert sorted(p.name for p in (tmp_path / "m" / "orig").iterdir()) == ["train.de.gz"]


@pytest.mark.slow
def test_multi30k_downloads_its_six_verified_files(tmp_path):
    summary, _ = _serve_and_prepare(tmp_path, "multi30k.de-en", _multi30k_files(), bpe_merges=2000)
    assert {k: v["sentences"] for k, v in summary["splits"].items()} == {"train": 29000, "valid": 1014, "test": 1000}


def test_preprocessed_tarball_is_installed_as_is(tmp_path):
    build = tmp_path / "build" / "iwslt14_de_en"
    build.mkdir(parents=True)
    dicts = {"de": Dictionary.build(["ein haus", "ein boot"]), "en": Dictionary.build(["a house"])}
    for lang, d in dicts.items():
        d.save(build / f"dict.{lang}.txt")
        write_indexed(build / f"test.de-en.{lang}", [d.encode_line("ein haus boot" if lang == "de" else "a house car")], len(d))
    members = {f"iwslt14_de_en/{p.name}": p.read_bytes() for p in build.iterdir()}
    server = FileServer()
    server.files["iwslt14_de_en.preproessed.tgz"] = _tar(members)
    with server.running() as url:
        summary = prepare_task("iwslt14.de-en", data_dir=tmp_path / "out", preprocessed=True, mirror=url)
    assert summary["source"] == "preprocessed"
    assert summary["splits"] == {"test": {"sentences": 1, "tokens": {"de": 4, "en": 4}, "unk_rate": {"de": 0.0, "en": 0.25},
                                          "unk": {"de": 0, "en": 1}}}
    assert (tmp_path / "out" / "test.de-en.de.bin").read_bytes() == (build / "test.de-en.de.bin").read_bytes()
