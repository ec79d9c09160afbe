"""Search by meaning: the bundled embedding model, its on-disk cache, and the word-only fallback."""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from mcp_types import Tool
from threadpoolctl import threadpool_info, threadpool_limits

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.search import SearchIndex, meaning, text
from portal_mcp.catalog.search.embeddings import (
    BUNDLED_MODEL,
    ON_THE_CALLER,
    EmbeddingCache,
    Encoder,
    search_embeddings,
)
from portal_mcp.catalog.search.fit import WEAK_SIMILARITY, understood
from portal_mcp.catalog.search.glossary import Glossary
from portal_mcp.catalog.search.index import SearchHit, task_ranking
from portal_mcp.catalog.search.intents import MAX_INTENTS, fuse, split_intents
from portal_mcp.catalog.search.meaning import FOREIGN_LIFT, dot, lift_foreign
from portal_mcp.catalog.search.query import spelled_out
from portal_mcp.catalog.search.reply import task_reply
from portal_mcp.catalog.snapshot import load_snapshot
from portal_mcp.config import PortalConfig, parse_config
from portal_mcp.errors import SearchModelError
from portal_mcp.portal import Portal


def tool(name: str, description: str) -> Tool:
    return Tool(name=name, description=description, input_schema={"type": "object", "properties": {}})


CATALOG = Catalog.build(
    {
        "bilibili": [tool("get_popular_videos", "Get the ranking of popular videos on Bilibili.")],
        "filesystem": [
            tool("write_file", "Create a new file or completely overwrite an existing file with new content."),
            tool("read_file", "Read the complete contents of a file."),
        ],
        "weather": [tool("get_forecast", "Get the weather forecast for a location.")],
        "stripe": [tool("create_refund", "Refund a charge that has been previously created.")],
    }
)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder.load()


def names(index: SearchIndex, query: str, limit: int = 3) -> list[str]:
    return [hit.entry.qualified_name for hit in index.search(query, limit=limit)]


def test_a_query_sharing_no_word_with_the_tool_finds_it_by_meaning(encoder: Encoder) -> None:
    index = SearchIndex(CATALOG, EmbeddingCache(encoder, None))
    assert names(index, "will it rain tomorrow in Lisbon", 1) == ["weather.get_forecast"]
    assert names(SearchIndex(CATALOG), "will it rain tomorrow in Lisbon") == []


ENGLISH = {
    "filesystem": [
        tool("write_file", "Create a new file or completely overwrite an existing file with new content."),
        tool("read_file", "Read the complete contents of a file."),
    ],
    "stripe": [tool("create_refund", "Refund a charge that has been previously created.")],
}
# A Chinese server's tools keep English names (here ones that say nothing) and describe themselves in Chinese.
CHINESE = Catalog.build(
    {
        "cn": [
            tool("query", "查询指定城市未来几天的天气预报"),
            tool("lookup", "根据快递单号查询物流信息"),
            tool("fetch", "获取股票的实时价格和涨跌幅"),
            tool("nearby", "搜索附近的餐厅和美食"),
            tool("convert", "将人民币按实时汇率换算成其他货币"),
        ],
    }
    | ENGLISH
)
# The same in traditional characters, as a Taiwanese or Hong Kong server writes them.
TRADITIONAL = Catalog.build(
    {
        "cn": [
            tool("query", "查詢指定城市未來幾天的天氣預報"),
            tool("lookup", "根據快遞單號查詢物流信息"),
            tool("fetch", "獲取股票的實時價格和漲跌幅"),
            tool("nearby", "搜索附近的餐廳和美食"),
            tool("convert", "將人民幣按實時匯率換算成其他貨幣"),
        ],
    }
    | ENGLISH
)


@pytest.mark.parametrize("catalog", [CHINESE, TRADITIONAL], ids=["simplified", "traditional"])
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("weather forecast for Beijing this week", "cn.query"),
        ("track my parcel delivery", "cn.lookup"),
        ("current share price of a company", "cn.fetch"),
        ("restaurants close to me", "cn.nearby"),
        ("how many dollars is 100 yuan", "cn.convert"),
    ],
)
def test_an_english_query_finds_a_tool_described_in_chinese(
    encoder: Encoder, catalog: Catalog, query: str, expected: str
) -> None:
    assert names(SearchIndex(catalog, EmbeddingCache(encoder, None)), query, 1) == [expected]


# Tools of a real Chinese server (baranwang/mcp-trends-hub, MIT), among English ones doing nearby jobs.
TRENDS = Catalog.build(
    {
        "trends_hub": [
            tool(
                "get_bilibili_rank",
                "获取哔哩哔哩视频排行榜，包含全站、动画、音乐、游戏等多个分区的热门视频，反映当下年轻人的内容消费趋势",
            ),
            tool("get_douyin_trending", "获取抖音热搜榜单，展示当下最热门的社会话题、娱乐事件、网络热点和流行趋势"),
            tool(
                "get_gcores_new", "获取机核网游戏相关资讯，包含电子游戏评测、玩家文化、游戏开发和游戏周边产品的深度内容"
            ),
            tool(
                "get_36kr_trending",
                "获取 36 氪热榜，提供创业、商业、科技领域的热门资讯，包含投融资动态、新兴产业分析和商业模式创新信息",
            ),
            tool(
                "get_smzdm_rank",
                "获取什么值得买热门，包含商品推荐、优惠信息、购物攻略、产品评测及消费经验分享的实用中文消费类资讯",
            ),
            tool(
                "get_weread_rank",
                "获取微信读书排行榜，包含热门小说、畅销书籍、新书推荐及各类文学作品的阅读数据和排名信息",
            ),
        ],
        "news": [
            tool("search_news", "Search recent news articles by keyword."),
            tool("top_headlines", "Get the top headlines for a country or category."),
        ],
        "shop": [tool("list_coupons", "List the discount coupons of the store.")],
        "games": [tool("get_game", "Get a video game's details by its id.")],
    }
    | ENGLISH
)


@pytest.mark.parametrize(
    ("query", "expected", "depth"),
    [
        # The issue's own example of a miss (before the glossary: douyin, games.get_game, gcores, bilibili).
        ("trending topics in the gaming world", {"get_bilibili_rank", "get_douyin_trending", "get_gcores_new"}, 3),
        ("startup and venture funding news", {"get_36kr_trending"}, 1),  # before: not in the first 2
        ("shopping deals and discounts people recommend", {"get_smzdm_rank"}, 2),
        ("bestselling books and new novels", {"get_weread_rank"}, 1),
    ],
)
def test_an_english_query_finds_the_tools_of_a_chinese_server_among_english_ones(
    encoder: Encoder, query: str, expected: set[str], depth: int
) -> None:
    found = names(SearchIndex(TRENDS, EmbeddingCache(encoder, None)), query, depth)
    assert {f"trends_hub.{name}" for name in expected} <= set(found)


def test_a_tool_in_chinese_that_meaning_prefers_is_not_beaten_by_an_english_one_sharing_a_word(
    encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = Catalog.build(
        {
            "cn": [tool("quote", "获取股票的实时价格和涨跌幅"), tool("forecast", "查询指定城市未来几天的天气预报")],
            "shop": [
                tool("get_price", "Get the price of a product in the store catalog."),
                tool("list_orders", "List the orders of a customer."),
            ],
        }
    )
    query = "price of a stock right now"
    # The glossary gives the Chinese tool the words "stock" and "price": with it, the words alone choose it.
    monkeypatch.setattr(meaning, "FOREIGN_LIFT", 1.0)
    assert names(SearchIndex(catalog, EmbeddingCache(encoder, None)), query, 1) == ["cn.quote"]
    # Without the glossary, only meaning reads the Chinese: the lift makes it win, and without it "price" wins.
    monkeypatch.setattr(text, "bundled", lambda: Glossary({}))
    assert names(SearchIndex(catalog, EmbeddingCache(encoder, None)), query, 1) == ["shop.get_price"]
    monkeypatch.setattr(meaning, "FOREIGN_LIFT", FOREIGN_LIFT)
    assert names(SearchIndex(catalog, EmbeddingCache(encoder, None)), query, 1) == ["cn.quote"]


def test_meaning_is_lifted_only_for_a_chinese_tool_above_every_other_and_a_query_without_chinese() -> None:
    routed, similarities = np.array([[0.5, 0.4, 0.3]]), np.array([[0.5, 0.4, 0.3]])
    english = np.array([False, False, False])
    assert lift_foreign(routed.copy(), similarities, english, ["weather"]).tolist() == routed.tolist()
    chinese_last = np.array([False, False, True])
    assert lift_foreign(routed.copy(), similarities, chinese_last, ["weather"]).tolist() == routed.tolist()
    chinese_first = np.array([True, False, False])
    lifted = lift_foreign(routed.copy(), similarities, chinese_first, ["weather"])
    assert lifted.tolist() == [[0.5 * FOREIGN_LIFT, 0.4, 0.3]]
    # A query in Chinese matches Chinese descriptions by their words: nothing is lifted.
    assert lift_foreign(routed.copy(), similarities, chinese_first, ["天气"]).tolist() == routed.tolist()


def test_a_second_start_embeds_nothing_and_a_changed_tool_is_embedded_alone(encoder: Encoder, tmp_path: Path) -> None:
    first = EmbeddingCache(encoder, tmp_path)
    SearchIndex(CATALOG, first)
    assert first.embedded == len(CATALOG)
    again = EmbeddingCache(encoder, tmp_path)
    warm = SearchIndex(CATALOG, again)
    assert again.embedded == 0
    assert names(warm, "will it rain tomorrow") == names(SearchIndex(CATALOG, first), "will it rain tomorrow")
    changed = CATALOG.replace_server("weather", [tool("get_forecast", "Daily forecast: rain, wind, temperature.")])
    after = EmbeddingCache(encoder, tmp_path)
    SearchIndex(changed, after)
    assert after.embedded == 1


def test_a_model_whose_tokenizer_changed_is_another_model_to_the_vector_cache(encoder: Encoder, tmp_path: Path) -> None:
    # Reading 視頻 as 视频 changed tokenizer.json only: the same vectors through another tokenizer are another model,
    # and vectors cached under the old one must not be reused.
    folder = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL, folder)
    assert Encoder.load(folder).identity == Encoder.load(folder).identity  # the same files, the same identity
    tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    del tokenizer["model"]["vocab"]["視頻"]
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    assert Encoder.load(folder).identity != Encoder.load(BUNDLED_MODEL).identity


def test_a_refitted_model_with_one_token_moved_embeds_again_into_its_own_cache(
    encoder: Encoder, tmp_path: Path
) -> None:
    SearchIndex(CATALOG, EmbeddingCache(encoder, tmp_path))
    vectors = encoder._embeddings.copy()
    row = encoder._tokenizer.token_to_id("forecast")
    vectors[row] += 0.5
    refitted = Encoder(encoder.name, encoder._tokenizer, vectors)
    assert refitted.identity != encoder.identity
    cache = EmbeddingCache(refitted, tmp_path)
    SearchIndex(CATALOG, cache)
    assert cache.embedded == len(CATALOG)
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_an_unreadable_cache_file_is_rebuilt(encoder: Encoder, tmp_path: Path) -> None:
    cache = EmbeddingCache(encoder, tmp_path)
    assert cache.path is not None
    cache.path.write_bytes(b"not an npz file")
    SearchIndex(CATALOG, cache)
    assert cache.embedded == len(CATALOG)
    assert EmbeddingCache(encoder, tmp_path).vectors(["Read the complete contents of a file."]).shape == (
        1,
        encoder.dims,
    )


def test_a_model_that_cannot_load_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SearchModelError) as caught:
        Encoder.load(tmp_path / "no-such-model")
    assert caught.value.model == str(tmp_path / "no-such-model")
    assert "semantic: false" in str(caught.value)


def test_the_portal_falls_back_to_words_with_one_warning_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config("search: {model: ./missing-model}\n", source="portal.yaml", base_dir=tmp_path, environ={})
    assert config.search.model == str(tmp_path / "missing-model")
    with caplog.at_level(logging.WARNING, logger="portal_mcp.portal"):
        assert search_embeddings(config.search) is None
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "missing-model" in warnings[0].getMessage() and "searching by words only" in warnings[0].getMessage()


async def test_a_portal_whose_model_cannot_load_still_searches_by_words(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = parse_config(
        f"search: {{model: ./missing-model}}\nservers:\n  time:\n    snapshot: {SNAPSHOT}\n",
        source="portal.yaml",
        base_dir=tmp_path,
        environ={},
    )
    with caplog.at_level(logging.WARNING):
        async with Portal.open(config.model_copy(update={"user": "tester"})) as portal:
            assert portal.embeddings is None
            reply = portal.search_api("convert a time between timezones", portal.local, limit=1)
    assert "time.convert_time" in reply
    unavailable = [r for r in caplog.records if getattr(r, "event", None) == "search_model_unavailable"]
    assert len(unavailable) == 1 and "searching by words only" in unavailable[0].getMessage()


def test_semantic_false_searches_by_words_only_and_loads_no_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = parse_config(
        "search: {semantic: false, model: ./missing}\n", source="p.yaml", base_dir=tmp_path, environ={}
    )
    with caplog.at_level(logging.WARNING):
        assert search_embeddings(config.search) is None
    assert caplog.records == []


async def test_a_portal_ranks_by_meaning_and_keeps_the_cache_where_the_config_says(
    tmp_path: Path, time_portal_config: PortalConfig
) -> None:
    async with Portal.open(time_portal_config) as portal:
        assert portal.embeddings is not None and portal.embeddings.embedded == len(portal.catalog)
        assert "time.get_current_time" in portal.search_api("what hour is it in Tokyo right now", portal.local, limit=1)
    assert list((tmp_path / "vectors").glob("*.npz"))


SNAPSHOT = Path(__file__).resolve().parents[1] / "schemas" / "time.json"


async def test_a_portal_keeps_blas_on_one_thread_for_its_searches(time_portal_config: PortalConfig) -> None:
    # Searches run in threads of their own; a multithreaded BLAS product on a busy machine waits for a core another
    # thread holds. BLAS is first allowed two threads, so the check fails unless opening the portal sets it to one.
    with threadpool_limits(limits=2, user_api="blas"):
        assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {2}
        async with Portal.open(time_portal_config):
            assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {1}


@pytest.mark.parametrize("count", [0, 1, 2, 11])
def test_the_dense_products_are_each_rows_dot_product_with_each_vector(count: int) -> None:
    rng = np.random.default_rng(count)
    matrix, vectors = rng.normal(size=(300, 16)).astype(np.float32), rng.normal(size=(count, 16)).astype(np.float32)
    products = dot(matrix, vectors)
    assert products.shape == (count, 300) and products.dtype == np.float64
    assert np.allclose(products, vectors.astype(np.float64) @ matrix.T.astype(np.float64), atol=1e-4)


def test_a_querys_few_texts_are_tokenized_and_embedded_as_a_builds_many_are() -> None:
    # Few texts are tokenized on the calling thread, many by the tokenizer's pool: the two ways must agree.
    encoder = Encoder.load()
    few = ["find trending repos on GitHub", "save a summary as Markdown", "naïve café 東京 k8s", ""]
    many = few + [f"tool number {number} lists widgets" for number in range(ON_THE_CALLER + 1)]
    assert len(few) <= ON_THE_CALLER < len(many)
    alone, together = encoder.token_ids(few), encoder.token_ids(many)[: len(few)]
    assert [ids.tolist() for ids in alone] == [ids.tolist() for ids in together]
    assert all(len(ids) for ids in alone[:3])  # the texts were read, not dropped
    assert np.array_equal(encoder.encode(few), encoder.encode(many)[: len(few)])


def test_a_multi_step_task_splits_into_its_intents() -> None:
    assert split_intents("find the trending repos, read the top one's wiki, then save a summary as Markdown") == [
        "find the trending repos",
        "read the top one's wiki",
        "save a summary as Markdown",
    ]
    assert split_intents("1. Get the weather in Paris 2. convert 20 EUR to USD") == [
        "Get the weather in Paris",
        "convert 20 EUR to USD",
    ]


def test_and_before_a_common_task_verb_or_and_also_starts_a_new_intent() -> None:
    assert split_intents("check the weather in Paris and recommend what to wear") == [
        "check the weather in Paris",
        "recommend what to wear",
    ]
    assert split_intents("show me the stock price of Apple, and also the latest news about it") == [
        "show me the stock price of Apple",
        "the latest news about it",
    ]


def test_a_plain_query_and_a_list_of_nouns_stay_one_intent() -> None:
    assert split_intents("create an issue in jira") == ["create an issue in jira"]
    assert split_intents("papers on climate, oceans and currents") == ["papers on climate, oceans and currents"]
    assert split_intents("read and write files") == ["read and write files"]


def test_chaining_words_abbreviations_and_a_fronted_place_do_not_make_intents_of_their_own() -> None:
    assert split_intents(
        "First, list the open pull requests. After that, compare equity vs. equality in the docs, and finally "
        "email the report to Dr. Smith"
    ) == ["list the open pull requests", "compare equity vs. equality in the docs", "email the report to Dr. Smith"]
    assert split_intents("From the Numbers API, get a math fact. On Kanji alive, list kanji with 16 strokes.") == [
        "From the Numbers API get a math fact",
        "On Kanji alive list kanji with 16 strokes",
    ]


@pytest.mark.parametrize(
    ("task", "intents"),
    [
        (
            "明天的湿度是多少？另外，你能提供一些房地产市场的信息吗？",
            ["明天的湿度是多少", "你能提供一些房地产市场的信息吗"],
        ),
        (
            "帮我找一下有关气候变化的最新新闻，再推荐一些相契合的氛围音乐。",
            ["帮我找一下有关气候变化的最新新闻", "推荐一些相契合的氛围音乐"],
        ),
        ("获取B站热门视频然后把列表保存为Markdown文件", ["获取B站热门视频", "把列表保存为Markdown文件"]),
        # One request, and a list of nouns ("和": and), stay whole.
        ("Europe 有哪些背包客必去的地方？", ["Europe 有哪些背包客必去的地方？"]),
        ("查询北京和上海的天气", ["查询北京和上海的天气"]),
    ],
)
def test_a_task_written_in_chinese_splits_at_its_sentences_and_chaining_words(task: str, intents: list[str]) -> None:
    assert split_intents(task) == intents


def test_a_long_task_keeps_up_to_max_intents_steps() -> None:
    steps = [f"{verb} the {noun} report" for verb, noun in zip(
        ("find", "read", "convert", "translate", "summarize", "upload", "share", "print", "email", "archive", "post"),
        ("sales", "budget", "travel", "hiring", "audit", "design", "support", "legal", "market", "risk", "quality"),
        strict=True,
    )]  # fmt: skip
    intents = split_intents(". ".join(steps))
    assert intents == steps[:MAX_INTENTS]


def test_fusing_rankings_puts_each_intents_best_first_and_a_tool_several_want_before_one_only_one_wants() -> None:
    task = ["a", "b", "c"]
    first = ["d", "b"]
    second = ["e", "f", "b"]
    # 1/rank summed: a, d and e score 1 (ties keep the order first seen), b 1/2 + 1/2 + 1/3, c 1/3, f 1/2.
    assert fuse([task, first, second], 10, str) == ["b", "a", "d", "e", "f", "c"]
    assert fuse([task, first, second], 2, str) == ["b", "a"]
    assert fuse([task, ["d"], ["e"]], 3, str) == ["a", "d", "e"]


def test_each_intent_of_a_task_gets_its_own_tools_and_the_flat_ranking_holds_them_all(encoder: Encoder) -> None:
    index = SearchIndex(CATALOG, EmbeddingCache(encoder, None))
    task = "get the popular videos on bilibili, then save the list as Markdown to a file"
    groups = index.search_intents(task, limit=2)
    assert [intent for intent, _ in groups] == [
        task,
        "get the popular videos on bilibili",
        "save the list as Markdown to a file",
    ]
    assert groups[1][1][0].entry.qualified_name == "bilibili.get_popular_videos"
    assert groups[2][1][0].entry.qualified_name == "filesystem.write_file"
    assert {"bilibili.get_popular_videos", "filesystem.write_file"} <= set(names(index, task, 3))


def test_a_task_reply_shows_the_flat_rankings_first_tools_each_under_the_step_it_fits(encoder: Encoder) -> None:
    catalog = Catalog.build({path.stem: load_snapshot(path) for path in sorted(SNAPSHOT.parent.glob("*.json"))})
    index = SearchIndex(catalog, EmbeddingCache(encoder, None))
    task = (
        "List the open pull requests of the portal repo, then create a jira ticket for each failing check. "
        "Post a summary to the team's slack channel. Keep it short and friendly."
    )
    groups = index.search_intents(task, limit=3)
    assert len(groups) == 5  # the task itself, then its four steps
    reply, shown = task_reply(groups, 3, "auto")
    best = [hit.entry.qualified_name for hit in index.search(task, limit=3)]
    assert sorted(shown) == sorted(best) and len(shown) == 3
    blocks = reply.split("\n## ")[1:]
    assert [block.splitlines()[0] for block in blocks] == [
        "1. List the open pull requests of the portal repo",
        "2. create a jira ticket for each failing check",
        "3. Post a summary to the team's slack channel",
        "4. Keep it short and friendly",
    ]
    assert "# github.list_pull_requests" in blocks[0]
    assert "# atlassian.jira_batch_create_issues" in blocks[1]
    assert "# slack.slack_post_message" in blocks[2]
    assert "# no tool of its own among the best" in blocks[3]  # the reply holds 3 tools, not one per step
    assert reply.count("async def ") == 3 and reply.count("    Args:") <= 1  # one tool with full docs


def test_a_step_whose_tools_are_all_far_by_meaning_counts_less_in_the_tasks_ranking() -> None:
    entries = {entry.qualified_name: entry for entry in CATALOG}

    def hit(name: str, similarity: float) -> SearchHit:
        return SearchHit(entries[name], 1.0, similarity)

    task = ("get the popular videos, chat a little, then save them", [hit("bilibili.get_popular_videos", 0.5)])
    chat = ("chat a little", [hit("stripe.create_refund", 0.1), hit("weather.get_forecast", 0.05)])
    save = ("save them", [hit("filesystem.write_file", 0.45)])
    # Unweighted, each step's best scores 1 and the earlier step wins the tie; the unsure one counts half.
    assert [h.entry.qualified_name for h in task_ranking([task, chat, save], 2)] == [
        "bilibili.get_popular_videos",
        "filesystem.write_file",
    ]
    sure = ("chat a little", [hit("stripe.create_refund", 0.6)])
    assert [h.entry.qualified_name for h in task_ranking([task, sure, save], 2)] == [
        "bilibili.get_popular_videos",
        "stripe.create_refund",
    ]


def test_a_weak_best_match_is_called_weak_and_a_good_one_is_not(encoder: Encoder) -> None:
    index = SearchIndex(CATALOG, EmbeddingCache(encoder, None))
    cake = "bake a chocolate cake for my grandmother"
    assert index.weak(cake, index.search(cake))
    assert not index.weak("refund the customer's charge", index.search("refund the customer's charge"))
    assert index.closest_servers("refund the customer's charge", ["stripe", "weather", "bilibili"], 1) == ["stripe"]


def test_a_query_of_no_word_the_catalog_or_the_model_knows_fits_nothing(encoder: Encoder) -> None:
    # The model reads "zzzz" as pieces of words, and a text of pieces lies near every tool: among the bundled
    # catalog's 850 (cosine 0.5 to the best), by meaning alone such a query looks as good as a real one.
    schemas = sorted((Path(__file__).resolve().parents[1] / "schemas").glob("*.json"))
    index = SearchIndex(
        Catalog.build({path.stem: load_snapshot(path) for path in schemas}), EmbeddingCache(encoder, None)
    )
    for nonsense in ("zzzz qqqq", "asdkjh qwpeoi", "!!!???", "what is it"):
        hits = index.search(nonsense)
        assert hits and index.weak(nonsense, hits), nonsense
    assert max(hit.similarity or 0.0 for hit in index.search("asdkjh qwpeoi")) >= 2 * WEAK_SIMILARITY
    assert not index.weak("refund the customer's charge", index.search("refund the customer's charge"))
    # Understood: a word some tool's text uses (by its token), or one the model has a token of its own for.
    nothing: set[str] = set()
    assert not understood("zzzz qqqq", nothing.__contains__, encoder)
    assert understood("zzzz qqqq", {"zzzz"}.__contains__, encoder)
    for sensible in ("bake a chocolate cake", "de-stress", "Hello"):
        assert understood(sensible, nothing.__contains__, encoder), sensible
    # The model's vocabulary lacks some real words ("refund" is ref + ##und): those count when the catalog uses them.
    assert not understood("refund", nothing.__contains__, encoder)
    assert understood("refunds", {"refund"}.__contains__, encoder)
    assert not understood("the of and", nothing.__contains__, encoder)  # stopwords say nothing
    # A query as long as `limits.max_query_chars` allows (its words are read in one call, many by the pool).
    rng = random.Random(3)
    long = " ".join("".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(6)) for _ in range(570))
    assert len(long.split()) > ON_THE_CALLER and not understood(long, nothing.__contains__, encoder)
    assert understood(long + " cake", nothing.__contains__, encoder)


async def test_search_api_answers_nothing_fits_with_the_closest_servers_and_a_task_by_intent(tmp_path: Path) -> None:
    servers = {
        "weather": {"snapshot": str(_snapshot(tmp_path, "weather")), "description": "Forecasts and alerts"},
        "filesystem": {"snapshot": str(_snapshot(tmp_path, "filesystem"))},
        "bilibili": {"snapshot": str(_snapshot(tmp_path, "bilibili"))},
        "stripe": {"snapshot": str(_snapshot(tmp_path, "stripe"))},
    }
    config = parse_config(json.dumps({"servers": servers}), source="p.json", base_dir=tmp_path, environ={})
    async with Portal.open(config.model_copy(update={"user": "tester"})) as portal:
        reply = portal.search_api("bake a chocolate cake for my grandmother", portal.local)
        assert reply.startswith("Nothing here fits 'bake a chocolate cake for my grandmother' well.")
        nonsense = portal.search_api("asdkjh qwpeoi", portal.local)
        assert nonsense.startswith("No word of 'asdkjh qwpeoi' is one these tools' descriptions use or the search")
        assert "\n- bilibili (1 tool)\n" in nonsense  # the servers there are, instead of noise ranked first
        one_known = portal.search_api("asdkjh the popular videos", portal.local)
        assert one_known.startswith("5 of 5 tools match") and "bilibili.get_popular_videos" in one_known
        lines = [line for line in reply.splitlines() if line.startswith("- ")]
        assert len(lines) == 3
        described = {
            "weather": "- weather (1 tools): Forecasts and alerts",
            "filesystem": "- filesystem (2 tools): tools: write_file, read_file",
            "bilibili": "- bilibili (1 tools): tools: get_popular_videos",
            "stripe": "- stripe (1 tools): tools: create_refund",
        }
        assert set(lines) <= set(described.values())
        task = portal.search_api(
            "get the popular videos on bilibili, then save the list as Markdown to a file", portal.local
        )
        assert task.startswith("A task of 2 steps")
        first, second = task.split("## 2. ")
        assert "bilibili.get_popular_videos" in first.split("## 1. ")[1]
        assert "filesystem.write_file" in second


def _snapshot(folder: Path, server: str) -> Path:
    path = folder / f"{server}.json"
    tools = [entry for entry in CATALOG if entry.server == server]
    wire = [{"name": e.name, "description": e.description, "inputSchema": dict(e.input_schema)} for e in tools]
    path.write_text(json.dumps({"tools": wire}), encoding="utf-8")
    return path


async def test_operator_curation_finds_tools_by_keywords_and_aliases_and_overrides_descriptions(tmp_path: Path) -> None:
    servers = {
        "weather": {
            "snapshot": str(_snapshot(tmp_path, "weather")),
            "search": {
                "aliases": ["meteo"],
                "tools": {
                    "get_forecast": {"keywords": ["umbrella"], "aliases": ["wx"], "description": "Forecast by day."}
                },
            },
        },
        "filesystem": {"snapshot": str(_snapshot(tmp_path, "filesystem")), "search": {"keywords": ["disk"]}},
    }
    text = json.dumps({"servers": servers, "search": {"semantic": False}})
    config = parse_config(text, source="p.json", base_dir=tmp_path, environ={})
    async with Portal.open(config.model_copy(update={"user": "tester"})) as portal:
        index = portal.index()
        assert names(index, "do I need an umbrella", 1) == ["weather.get_forecast"]
        assert names(index, "wx", 1) == ["weather.get_forecast"]
        assert {hit.entry.server for hit in index.search("disk", limit=5)} == {"filesystem"}
        assert portal.catalog.get("weather.get_forecast").description == "Forecast by day."  # type: ignore[union-attr]
        assert "Forecast by day." in portal.search_api("umbrella", portal.local)
        assert "Get the weather forecast" not in portal.search_api("umbrella", portal.local)
        assert portal.unmatched() == []


def test_every_cached_vector_is_found_again_whatever_its_key_bytes(encoder: Encoder, tmp_path: Path) -> None:
    # 1,000 keys: some digests end in a zero byte, which a string array would have dropped.
    texts = [f"tool number {n} does thing {n * 7}" for n in range(1000)]
    EmbeddingCache(encoder, tmp_path).vectors(texts)
    again = EmbeddingCache(encoder, tmp_path)
    again.vectors(texts)
    assert again.embedded == 0


def test_a_query_naming_a_server_tells_its_tools_apart_by_their_verbs(encoder: Encoder) -> None:
    # Meaning finds the domain; once the query names the server, the words choose among its tools by verb.
    snapshots = Path(__file__).resolve().parents[1] / "schemas"
    bundled = Catalog.build(
        {name: load_snapshot(snapshots / f"{name}.json") for name in ("gitlab", "github", "supabase", "grafana")}
    )
    index = SearchIndex(bundled, EmbeddingCache(encoder, None))
    assert names(index, "open a merge request in gitlab", 1) == ["gitlab.create_merge_request"]
    assert names(index, "ship an edge function to supabase", 1) == ["supabase.deploy_edge_function"]
    assert names(index, "mute a grafana alert for an hour", 1) == ["grafana.alerting_silences_write"]


def test_a_question_finds_the_tool_that_reads_whatever_verbs_it_says(encoder: Encoder) -> None:
    # "which labels did we add" asks what there is, not to add one: every tool that makes or changes things waits.
    snapshots = Path(__file__).resolve().parents[1] / "schemas"
    bundled = Catalog.build({name: load_snapshot(snapshots / f"{name}.json") for name in ("gitlab", "grafana")})
    index = SearchIndex(bundled, EmbeddingCache(encoder, None))
    assert names(index, "which labels did we add to the gitlab project", 1) == ["gitlab.list_labels"]
    assert names(index, "which silences have we added in grafana", 1) == ["grafana.alerting_silences_read"]
    assert names(index, "add a label to the gitlab project", 1) == ["gitlab.create_label"]


def test_abbreviations_and_idioms_are_spelled_out_for_the_query_vector(encoder: Encoder) -> None:
    assert spelled_out("scale the k8s pods of my repos, then get rid of the PRs") == [
        "kubernetes",
        "repositories",
        "pull requests",
        "delete",
    ]
    assert spelled_out("list the pods") == []
    catalog = Catalog.build(
        {
            "stripe": [tool("create_price", "Create a price for a product."), tool("list_prices", "List prices.")],
            "markets": [tool("get_quote", "Latest stock price of a listed company by ticker.")],
        }
    )
    index = SearchIndex(catalog, EmbeddingCache(encoder, None))
    assert names(index, "what is the current share price of Nvidia", 1) == ["markets.get_quote"]
