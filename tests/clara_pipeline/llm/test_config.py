import pytest

from clara_pipeline.llm.config import LLMConfig, LLMConfigError, safe_endpoint

KEY = "sk-config-test-secret"


def test_no_base_url_means_offline_even_with_an_openai_key():
    assert LLMConfig.from_env({"OPENAI_API_KEY": KEY}) is None
    assert LLMConfig.from_env({"CLARA_LLM_BASE_URL": "  "}) is None


def test_reads_every_variable():
    config = LLMConfig.from_env({
        "CLARA_LLM_BASE_URL": "http://localhost:8000/v1", "CLARA_LLM_API_KEY": KEY, "CLARA_LLM_MODEL": "qwen-turbo",
        "CLARA_VLM_MODEL": "qwen-vl-max", "CLARA_EMBEDDING_MODEL": "text-embedding-v3",
        "CLARA_LLM_MAX_CONCURRENCY": "4", "CLARA_LLM_RPM": "120", "CLARA_LLM_TIMEOUT_S": "30",
        "CLARA_LLM_MAX_RETRIES": "3", "CLARA_LLM_MAX_REASKS": "1", "CLARA_LLM_TEMPERATURE": "0.7",
        "CLARA_LLM_PRICE_INPUT_PER_1M": "0.15", "CLARA_LLM_PRICE_OUTPUT_PER_1M": "0.6",
    })
    assert (config.model, config.vision_model, config.embedding_model) == ("qwen-turbo", "qwen-vl-max",
                                                                            "text-embedding-v3")
    assert (config.max_concurrency, config.requests_per_minute, config.timeout_s) == (4, 120.0, 30.0)
    assert (config.max_retries, config.max_reasks, config.temperature) == (3, 1, 0.7)
    assert config.prices_known and config.api_key == KEY


def test_defaults_and_key_fallback():
    config = LLMConfig.from_env({"CLARA_LLM_BASE_URL": "https://api.openai.com/v1", "OPENAI_API_KEY": KEY})
    assert config.api_key == KEY
    assert config.model == "gpt-4o-mini" and config.vision_model == "gpt-4o-mini"
    assert config.embedding_model is None and not config.prices_known
    assert (config.max_concurrency, config.requests_per_minute, config.max_retries, config.max_reasks) == (8, 600, 6, 2)
    # CLARA_LLM_API_KEY wins over OPENAI_API_KEY; 0 RPM means no limit.
    config = LLMConfig.from_env({"CLARA_LLM_BASE_URL": "http://h/v1", "CLARA_LLM_API_KEY": "a", "OPENAI_API_KEY": "b",
                                 "CLARA_LLM_RPM": "0"})
    assert config.api_key == "a" and config.requests_per_minute is None


@pytest.mark.parametrize("name, value", [
    ("CLARA_LLM_MAX_CONCURRENCY", "0"), ("CLARA_LLM_MAX_CONCURRENCY", "eight"), ("CLARA_LLM_RPM", "-1"),
    ("CLARA_LLM_TIMEOUT_S", "nan"), ("CLARA_LLM_MAX_RETRIES", "-2"), ("CLARA_LLM_TEMPERATURE", "3"),
    ("CLARA_LLM_PRICE_INPUT_PER_1M", "cheap"),
])
def test_a_bad_value_names_its_variable(name, value):
    with pytest.raises(LLMConfigError, match=name):
        LLMConfig.from_env({"CLARA_LLM_BASE_URL": "http://localhost/v1", name: value})


def test_a_bad_url_is_refused_without_echoing_credentials():
    with pytest.raises(LLMConfigError, match="CLARA_LLM_BASE_URL"):
        LLMConfig.from_env({"CLARA_LLM_BASE_URL": "localhost:8000"})
    with pytest.raises(LLMConfigError) as info:
        LLMConfig.from_env({"CLARA_LLM_BASE_URL": f"ftp://user:{KEY}@host/v1"})
    assert KEY not in str(info.value)


def test_contradictions_are_refused_naming_the_field():
    with pytest.raises(LLMConfigError, match="backoff_max_s"):
        LLMConfig(base_url="http://h/v1", backoff_base_s=5, backoff_max_s=1)
    with pytest.raises(LLMConfigError, match="model"):
        LLMConfig(base_url="http://h/v1", model=" ")


def test_the_key_is_in_neither_repr_nor_describe():
    config = LLMConfig(base_url=f"https://user:{KEY}@proxy.example.com:8443/v1?token={KEY}", api_key=KEY)
    assert KEY not in repr(config)
    assert KEY not in str(config.describe())
    assert config.describe()["api_key"] == "set"
    assert config.endpoint == "https://proxy.example.com:8443/v1"
    assert safe_endpoint("http://127.0.0.1:9/v1/") == "http://127.0.0.1:9/v1"
