"""Shared inputs for the LLM tests: sample chunks, images, and a loopback config with test-sized waits."""

import io

from PIL import Image, ImageDraw

from clara_pipeline.llm import LLMConfig
from clara_pipeline.llm.loopback import LoopbackServer

API_KEY = "sk-test-4f1c9a7e-never-log-me"

EN_CHUNK = """# Pump maintenance
The X200 pump runs at 24 V and draws up to 3.5 A. It must be inspected every 6 months by the Quality Assurance team.
If the pressure exceeds 8 bar, the operator stops the pump and reports to the maintenance lead.
- Replace the filter after 500 hours of operation.
- Log every inspection in the SAP system within 3 days."""

ZH_CHUNK = """# 设备维护
X200 水泵使用 24 V 电源，最大电流为 3.5 A。质量保证团队每 6 个月检查一次水泵。
如果压力超过 8 bar，操作员必须停止水泵并向维护负责人报告！过滤器在运行 500 小时后更换；每次检查都必须在 3 天内记录在 SAP 系统中。"""


def make_png(width: int = 320, height: int = 200, mode: str = "RGBA", seed: int = 0) -> bytes:
    """A small diagram-like PNG; `seed` moves the boxes so each seed gives different bytes."""
    image = Image.new(mode, (width, height), (0, 0, 0, 0) if mode == "RGBA" else (250, 250, 250))
    draw = ImageDraw.Draw(image)
    for i in range(3):
        x = (10 + 60 * i + seed * 7) % max(1, width - 50)
        draw.rectangle([x, 20, x + 40, 60], fill=(40, 90, 200, 255) if mode == "RGBA" else (40, 90, 200))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def fast_config(server: LoopbackServer, **overrides) -> LLMConfig:
    """A config for the loopback server with test-sized backoff and timeouts, no rate limit."""
    values = dict(base_url=server.url, api_key=API_KEY, model="chat-model", vlm_model="vision-model",
                  requests_per_minute=None, timeout_s=2.0, backoff_base_s=0.01, backoff_max_s=0.05)
    values.update(overrides)
    return LLMConfig(**values)
