"""Search over tools and queries written in other scripts than ASCII: accented words stay whole, scripts written
without spaces (Chinese, Japanese, Korean) are read as pairs of characters, and an English query ranks a tool the
same whether or not its description also says it in another language. The model reads Chinese by words of its
vocabulary (`benchmarks/search_eval/cjk.py`); characters it does not know (emoji, rare CJK characters) give a
vector nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mcp_types import Tool

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.search import SearchIndex, stored, tokenize
from portal_mcp.catalog.search.embeddings import EmbeddingCache, Encoder
from portal_mcp.catalog.search.glossary import Glossary, bundled, in_chinese
from portal_mcp.catalog.search.query import query_tokens, spelled_out
from portal_mcp.catalog.search.stored import IndexStore
from portal_mcp.catalog.search.words import forms

SEARCH_EVAL = Path(__file__).resolve().parents[1] / "benchmarks" / "search_eval"


def tool(name: str, description: str) -> Tool:
    return Tool(name=name, description=description, input_schema={"type": "object", "properties": {}})


ENGLISH = {
    "files": [
        tool("read_file", "Read the complete contents of a file."),
        tool("write_file", "Create a new file or overwrite an existing file."),
    ],
    "weather": [tool("get_forecast", "Get the weather forecast for a city.")],
}
CHINESE = {
    "bilibili": [
        tool("get_popular_videos", "获取哔哩哔哩热门视频排行榜"),
        tool("search_videos", "按关键词搜索视频"),
        tool("get_user_info", "获取用户的个人资料"),
    ],
    "weather_cn": [tool("forecast", "查询城市的天气预报")],
}


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder.load()


def test_words_of_other_scripts_are_whole_words_and_unspaced_scripts_are_pairs() -> None:
    # "Größe" was "gr" (and "ß" a separator): any tool saying "grep" or "group" shared its token.
    assert tokenize("Größe ändern") == ["grösse", "ändern"]
    assert tokenize("Straße") == tokenize("strasse")  # casefolded: both spellings meet
    assert tokenize("热门视频") == ["热门", "门视", "视频", "热门视频"]
    assert tokenize("图") == ["图"]  # one character alone is still a word
    assert tokenize("B站热门") == ["站热", "热门", "b站热门"]
    assert forms("list_文件") == {"list", "文件"}
    # ASCII is read as before: camelCase split, stemmed, the identifier kept whole.
    assert tokenize("getCurrentTime") == ["get", "current", "tim", "getcurrenttime"]


@pytest.mark.parametrize("semantic", [False, True])
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("热门视频", "bilibili.get_popular_videos"),
        ("搜索视频", "bilibili.search_videos"),
        ("天气预报", "weather_cn.forecast"),
        ("用户资料", "bilibili.get_user_info"),
    ],
)
def test_a_chinese_query_finds_the_tool_whose_chinese_description_says_it(
    encoder: Encoder, tmp_path: Path, semantic: bool, query: str, expected: str
) -> None:
    # Before, no Chinese character was a word: these queries had no words at all, and only meaning ranked them.
    embeddings = EmbeddingCache(encoder, tmp_path) if semantic else None
    index = SearchIndex(Catalog.build(ENGLISH | CHINESE), embeddings)
    assert index.search(query, limit=1)[0].entry.qualified_name == expected


def test_the_glossary_reads_the_longest_word_first_and_passes_over_what_it_does_not_know() -> None:
    glossary = Glossary({"天": "sky day", "天气": "weather", "天气预报": "weather forecast", "城市": "city"})
    assert glossary.english("查询城市的天气预报, then 天") == "city weather forecast sky day"
    assert glossary.english("weather forecast") == ""


def test_the_bundled_glossary_gives_common_chinese_words_their_dictionary_english() -> None:
    english = bundled().english("获取股票的实时价格和热门游戏排行榜").split()
    for word in ("get", "stock", "price", "popular", "game", "ranking"):
        assert word in english
    assert len(bundled()) > 20000


def test_traditional_characters_read_as_the_simplified_ones(encoder: Encoder) -> None:
    # The model's Chinese words were fitted on simplified text; its tokenizer reads their traditional forms as them.
    traditional, simplified = "兒童視頻排行榜和天氣預報", "儿童视频排行榜和天气预报"
    assert encoder.token_ids([traditional])[0].tolist() == encoder.token_ids([simplified])[0].tolist()
    assert bundled().english(traditional) == bundled().english(simplified)


def test_an_english_query_finds_a_tool_described_in_chinese_by_words_alone() -> None:
    # Without a model (semantic: false), no English word matched a Chinese description, and these names say
    # nothing: the queries found the English tools or none.
    cryptic = {
        "cn": [
            tool("bili_hot", "获取哔哩哔哩热门视频排行榜"),
            tool("zl", "获取用户的个人资料"),
            tool("tq", "查询城市的天气预报"),
        ]
    }
    index = SearchIndex(Catalog.build(ENGLISH | cryptic))
    for query, expected in [
        ("the ranking of popular videos", "cn.bili_hot"),
        ("a user's personal profile", "cn.zl"),
    ]:
        assert [hit.entry.qualified_name for hit in index.search(query, limit=1)] == [expected]
    assert {hit.entry.qualified_name for hit in index.search("weather forecast", limit=2)} == {
        "weather.get_forecast",
        "cn.tq",
    }


def test_a_chinese_query_finds_an_english_tool_by_the_english_of_its_words() -> None:
    # Before, no word of these queries was one of the catalog's: words alone (semantic: false) found nothing.
    index = SearchIndex(Catalog.build(ENGLISH))
    for query, expected in [("读取文件的全部内容", "files.read_file"), ("城市的天气预报", "weather.get_forecast")]:
        assert [hit.entry.qualified_name for hit in index.search(query, limit=1)] == [expected]
    assert {"weather", "forecast"} <= set(query_tokens("天气预报"))
    assert query_tokens("the weather forecast") == ["weather", "forecast"]  # English queries as before
    assert spelled_out("查询天气预报") == [bundled().english("查询天气预报")]  # the query's vector reads it too
    # A long query's English is bounded: its first characters' words, each once (4,000 characters of 热 cost 129 ms
    # glossed whole at 4,027 tools, against 13 unglossed).
    assert query_tokens("热" * 4000).count("heat") == 1
    assert "weather" not in query_tokens("热" * 4000 + "天气")


def test_only_a_text_written_in_chinese_is_glossed() -> None:
    assert in_chinese("获取哔哩哔哩热门视频排行榜") and in_chinese("获取 Bilibili 热门视频 (top 100)")
    assert not in_chinese("Read the complete contents of a file. 读取文件的全部内容。")
    assert not in_chinese("Größe ändern")
    assert not in_chinese("地図の縮尺を指定します")  # Japanese: kana between the characters


def test_an_index_on_disk_is_not_read_back_once_the_glossary_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    glossary = tmp_path / "glossary_zh.tsv"
    glossary.write_text("视频\tvideo\n", encoding="utf-8")
    monkeypatch.setattr(stored, "BUNDLED_GLOSSARY", glossary)
    store, entries = IndexStore(tmp_path / "index"), list(Catalog.build(CHINESE))
    before = store.key(entries, {}, None)
    glossary.write_text("视频\tvideo clip\n", encoding="utf-8")
    assert store.key(entries, {}, None) != before


def test_a_description_that_also_says_it_in_another_language_is_not_weaker_for_an_english_query() -> None:
    # BM25 shortens the reach of a long text; a translation beside the English must not count as length.
    bilingual = {
        **ENGLISH,
        "files": [
            tool("read_file", "Read the complete contents of a file. 读取文件的全部内容。Прочитать содержимое файла."),
            ENGLISH["files"][1],
        ],
    }
    for query in ("read a file", "overwrite the file", "weather in Paris"):
        english = [(hit.entry.qualified_name, hit.score) for hit in SearchIndex(Catalog.build(ENGLISH)).search(query)]
        both = [(hit.entry.qualified_name, hit.score) for hit in SearchIndex(Catalog.build(bilingual)).search(query)]
        assert both == english
    # And the translation is found by its own words.
    hits = SearchIndex(Catalog.build(bilingual)).search("прочитать файл", limit=1)
    assert hits[0].entry.qualified_name == "files.read_file"


def test_words_of_other_scripts_are_kept_on_disk_with_the_index(encoder: Encoder, tmp_path: Path) -> None:
    catalog = Catalog.build(ENGLISH | CHINESE)
    store = IndexStore(tmp_path / "index")
    embeddings = EmbeddingCache(encoder, tmp_path / "vectors")
    built = SearchIndex(catalog, embeddings, store=store)
    read_back = SearchIndex(catalog, embeddings, store=store)
    assert store.loaded == 1
    for query in ("热门视频", "天气预报", "read a file"):
        first = [(hit.entry.qualified_name, hit.score) for hit in built.search(query)]
        assert [(hit.entry.qualified_name, hit.score) for hit in read_back.search(query)] == first


def test_characters_the_model_does_not_know_add_nothing_to_a_vector(encoder: Encoder) -> None:
    # Emoji and rare CJK characters are the tokenizer's one unknown token; counted, they were one shared direction.
    with_emoji, plain = encoder.encode(["🎯 📦 weather forecast", "weather forecast"])
    assert with_emoji.tolist() == plain.tolist()
    assert not encoder.encode(["𠀋𠀌 䶵"]).any()  # nothing the model knows: no direction at all
    # A rare character inside a run of known ones costs only itself (a WordPiece word with one unknown piece was
    # unknown whole).
    with_rare, common = encoder.encode(["查询䶵天气预报", "查询天气预报"])
    assert with_rare.tolist() == common.tolist()


def test_chinese_is_read_by_words_of_the_models_vocabulary_in_pieces_of_at_most_eight_characters(
    encoder: Encoder,
) -> None:
    assert len(encoder.token_ids(["城市的天气预报"])[0]) == 4  # 城市 的 天气 预报, not seven characters
    assert len(encoder.token_ids(["城市的天气预报城市的天气预报"])[0]) == 9  # cut after 8: ... 天 | 气 预报 ...
    assert encoder.whole_words(["天气", "天气预报", "weather"]) == [True, False, True]


@pytest.mark.parametrize("script", ["tokenlearn.py", "contrastive.py"])
def test_the_english_rebuild_scripts_refuse_a_model_with_chinese_tokens(script: str) -> None:
    # They fit and save the English vocabulary's rows alone: run on the bundled model, they wrote a broken one.
    done = subprocess.run(
        [sys.executable, str(SEARCH_EVAL / script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1
    assert "has cjk.py's Chinese tokens" in done.stderr and "build_search_model.py first" in done.stderr


def test_a_query_the_model_cannot_read_is_not_matched_to_a_tool_full_of_emoji(encoder: Encoder) -> None:
    emoji = {
        "crm": [
            tool("get_schemas", "🎯 Purpose: 📦 lists the custom object schemas. 🧭 Usage: ✅ before custom objects."),
            tool("list_objects", "Lists the objects of one type, a page at a time."),
        ]
    }
    index = SearchIndex(Catalog.build(ENGLISH | emoji), EmbeddingCache(encoder, None))
    # Neither words nor meaning read it: no tool (search_api then says none matches and lists the servers), where
    # the emoji tool came first, as a close match by meaning.
    assert index.search("𠀋𠀌 䶵䶴") == []  # rare characters: no word of the catalog, no token of the model
    assert [hit.entry.qualified_name for hit in index.search("custom object schemas", limit=1)] == ["crm.get_schemas"]
