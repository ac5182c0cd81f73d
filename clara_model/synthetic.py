"""Made-up facts about made-up equipment, in English and Chinese: reading-comprehension text nobody can memorise.

Every fact is drawn at random (a code, a kind, four to six attributes with random values), so a question about
a fresh document can only be answered by reading that document. Two users:

- the CPU base model (`clara_model.pretrain_base`) learns to answer from its context on these passages;
- `bench/learning.py` builds its training and held-out documents with the same generator and other seeds, so
  no held-out fact was ever seen by the base or by any stage.

Pure Python and seeded: the same seed gives the same documents on every machine.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

SYNTHETIC_VERSION = "2"  # bump when the same seed draws other text (the CPU base's reading skill depends on it)

CONSONANTS = "BCDFGHJKLMNPRSTVWXZ"
CODE_SPACE = len(CONSONANTS) ** 2 * 90  # device codes "KX-47": two consonants, 10..99

KINDS = [("valve", "阀门"), ("pump", "泵"), ("sensor", "传感器"), ("relay", "继电器"), ("gateway", "网关"),
         ("fan", "风扇"), ("meter", "仪表"), ("camera", "摄像头"), ("compressor", "压缩机"), ("boiler", "锅炉"),
         ("router", "路由器"), ("motor", "电机"), ("charger", "充电器"), ("drone", "无人机"), ("scanner", "扫描仪")]
MATERIALS = [("forged brass", "锻造黄铜"), ("cast iron", "铸铁"), ("stainless steel", "不锈钢"), ("titanium", "钛合金"),
             ("bronze", "青铜"), ("aluminium", "铝"), ("carbon fibre", "碳纤维"), ("copper", "铜"),
             ("ceramic", "陶瓷"), ("nylon", "尼龙")]
CITIES = [("Trondheim", "特隆赫姆"), ("Lyon", "里昂"), ("Graz", "格拉茨"), ("Porto", "波尔图"), ("Tampere", "坦佩雷"),
          ("Leipzig", "莱比锡"), ("Bilbao", "毕尔巴鄂"), ("Gdansk", "格但斯克"), ("Aarhus", "奥胡斯"), ("Turin", "都灵"),
          ("Suzhou", "苏州"), ("Xiamen", "厦门"), ("Dalian", "大连"), ("Hefei", "合肥")]
COLOURS = [("red", "红色"), ("blue", "蓝色"), ("green", "绿色"), ("yellow", "黄色"), ("black", "黑色"),
           ("white", "白色"), ("orange", "橙色"), ("grey", "灰色"), ("purple", "紫色")]
FIRST_NAMES = ["Anna", "Bruno", "Chen", "Dara", "Emil", "Farah", "Goran", "Hana", "Ivo", "Jun", "Karin", "Lena",
               "Marek", "Nadia", "Omar", "Petra", "Rui", "Sofia", "Tomas", "Wei", "Yara", "Zoltan"]
SURNAMES_ZH = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "朱"]
GIVEN_ZH = ["伟", "芳", "娜", "敏", "静", "强", "磊", "洋", "艳", "勇", "军", "杰", "涛", "明", "超", "霞"]


def _pair(choices: list[tuple[str, str]]):
    return lambda r: r.choice(choices)


def _number(low: int, high: int, unit_en: str, unit_zh: str):
    def make(r: random.Random) -> tuple[str, str]:
        n = r.randint(low, high)
        return f"{n} {unit_en}", f"{n}{unit_zh}"
    return make


def _hall(r: random.Random) -> tuple[str, str]:
    hall = f"{r.choice('ABCDEFGH')}{r.randint(1, 9)}"
    return f"Hall {hall}", f"{hall}车间"


def _person(r: random.Random) -> tuple[str, str]:
    return r.choice(FIRST_NAMES) + " " + r.choice(CONSONANTS) + ".", r.choice(SURNAMES_ZH) + r.choice(GIVEN_ZH)


def _year(r: random.Random) -> tuple[str, str]:
    year = r.randint(1990, 2025)
    return str(year), f"{year}年"


@dataclass(frozen=True)
class Attribute:
    """One kind of fact: how to draw its value, and how to say and ask it in each language ({e}: the entity)."""

    name: str
    make: object  # (random.Random) -> (english value, chinese value)
    sentence_en: str
    question_en: str
    sentence_zh: str
    question_zh: str


ATTRIBUTES = [  # the English value right after its attribute, as in Chinese: "The {e}'s material is {v}."
    Attribute("pressure", _number(10, 99, "bar", "巴"), "The {e}'s maximum pressure is {v}.",
              "What is the {e}'s maximum pressure?", "{e}的最大压力为{v}。", "{e}的最大压力是多少？"),
    Attribute("material", _pair(MATERIALS), "The {e}'s material is {v}.", "What is the {e}'s material?",
              "{e}的材料是{v}。", "{e}的材料是什么？"),
    Attribute("location", _hall, "The {e}'s location is {v}.", "What is the {e}'s location?",
              "{e}的安装位置是{v}。", "{e}的安装位置是哪里？"),
    Attribute("city", _pair(CITIES), "The {e}'s factory city is {v}.", "What is the {e}'s factory city?",
              "{e}的制造城市是{v}。", "{e}的制造城市是哪里？"),
    Attribute("colour", _pair(COLOURS), "The {e}'s housing colour is {v}.", "What is the {e}'s housing colour?",
              "{e}的外壳是{v}的。", "{e}的外壳是什么颜色？"),
    Attribute("year", _year, "The {e}'s service year is {v}.", "What is the {e}'s service year?",
              "{e}的投用年份是{v}。", "{e}的投用年份是哪一年？"),
    Attribute("operator", _person, "The {e}'s maintainer is {v}.", "Who is the {e}'s maintainer?",
              "{e}的维护人是{v}。", "{e}的维护人是谁？"),
    Attribute("power", _number(5, 950, "watts", "瓦"), "The {e}'s power draw is {v}.",
              "What is the {e}'s power draw?", "{e}的功率为{v}。", "{e}的功率是多少？"),
]


@dataclass(frozen=True)
class Fact:
    attribute: str
    question: str
    answer: str
    sentence: str
    value_en: str = ""  # the value in each language (the answer is the document's)
    value_zh: str = ""


@dataclass(frozen=True)
class Document:
    """One made-up device and what its document says about it."""

    entity: str
    kind: tuple[str, str]  # (english, chinese)
    lang: str  # "en" or "zh"
    text: str
    facts: tuple[Fact, ...]


class FactWorld:
    """Draws documents about distinct made-up devices; `seed` fixes every draw.

    Entity codes never repeat within one world, so a question names exactly one document of it; codes in
    `reserved_codes` (another world's `codes`) are never drawn, so two worlds can share no device.
    """

    def __init__(self, seed: int, *, zh_fraction: float = 0.3, facts: tuple[int, int] = (4, 6),
                 reserved_codes: set[str] | frozenset[str] = frozenset()) -> None:
        self.random = random.Random(seed)
        self.zh_fraction = zh_fraction
        self.facts = facts
        self._reserved = frozenset(reserved_codes)
        self._codes: set[str] = set()

    @property
    def codes(self) -> frozenset[str]:
        """The device codes drawn so far."""
        return frozenset(self._codes)

    def _code(self) -> str:
        r = self.random
        if len(self._codes) + len(self._reserved) >= CODE_SPACE:
            raise RuntimeError(f"this FactWorld has drawn all {CODE_SPACE} device codes; draw more documents from "
                               "several worlds (other seeds)")
        while True:
            code = f"{r.choice(CONSONANTS)}{r.choice(CONSONANTS)}-{r.randint(10, 99)}"
            if code not in self._codes and code not in self._reserved:
                self._codes.add(code)
                return code

    def document(self, lang: str | None = None, *, attributes: Sequence[str] | None = None) -> Document:
        """One document; `attributes` (names of ATTRIBUTES) fixes which facts it states, in that order."""
        r = self.random
        lang = lang or ("zh" if r.random() < self.zh_fraction else "en")
        code = self._code()
        kind_en, kind_zh = r.choice(KINDS)
        entity = f"{code} {kind_en}" if lang == "en" else f"{code}{kind_zh}"
        if attributes is None:
            attributes = r.sample(ATTRIBUTES, r.randint(*self.facts))
        else:
            by_name = {a.name: a for a in ATTRIBUTES}
            attributes = [by_name[name] for name in attributes]
        facts = []
        for attribute in attributes:
            value_en, value_zh = attribute.make(r)
            if lang == "en":
                value = value_en
                sentence = attribute.sentence_en.format(e=entity, v=value)
                question = attribute.question_en.format(e=entity)
            else:
                value = value_zh
                sentence = attribute.sentence_zh.format(e=entity, v=value)
                question = attribute.question_zh.format(e=entity)
            facts.append(Fact(attribute.name, question, value, sentence, value_en, value_zh))
        separator = " " if lang == "en" else ""
        return Document(entity, (kind_en, kind_zh), lang, separator.join(f.sentence for f in facts), tuple(facts))

    def documents(self, n: int) -> list[Document]:
        return [self.document() for _ in range(n)]
