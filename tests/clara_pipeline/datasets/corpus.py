"""Small corpora for the dataset tests: hand-written EN/ZH chunks, and a seeded generated one of any size."""

from __future__ import annotations

import random

from clara_pipeline.datasets import ChunkRecord, Paraphrase, QAPair

MANUAL = [
    ("en-pump", "en", "The KD-200 coolant pump draws 24V DC and delivers 40 litres per minute. Replace the impeller "
                      "seal every 2000 operating hours; a worn seal shows as a drip under the housing."),
    ("en-badge", "en", "Visitors sign in at the front desk and receive a temporary badge. Badges expire at 18:00 and "
                       "must be returned to security before leaving the building."),
    ("en-expense", "en", "Travel expenses above 500 euros need written approval from a department head. Receipts are "
                         "uploaded to the finance portal within 30 days of the trip."),
    ("en-laser", "en", "The laser cutter stops at once when its lid opens. Operators wear safety glasses rated for "
                       "the 1064 nm wavelength and check the extraction fan before each job."),
    ("en-backup", "en", "Nightly backups of the engineering file server start at 02:00 and keep 14 daily "
                        "snapshots. Restores are requested through the IT service desk."),
    ("zh-sensor", "zh", "温度传感器的测量范围为零下四十度到一百二十五度，精度为正负零点五度。传感器每五秒上报一次读数。"),
    ("zh-leave", "zh", "员工每年享有十五天带薪年假，未休完的年假可以顺延到次年三月底。请假需要提前三个工作日在系统中提交申请。"),
    ("zh-forklift", "zh", "叉车只能由持证司机驾驶，仓库内限速每小时八公里。每班开始前必须检查刹车、喇叭和货叉是否正常。"),
    ("zh-canteen", "zh", "公司食堂早餐供应时间为七点到九点，午餐为十一点半到一点半。员工凭工卡刷卡消费，访客需要购买餐券。"),
    ("zh-firmware", "zh", "控制器固件升级前必须备份当前参数。升级过程中不得断电，升级完成后设备会自动重启并校验版本号。"),
]

MANUAL_PAIRS = [
    ("en-pump", "fact", "What voltage does the KD-200 coolant pump draw?", "24V DC"),
    ("en-pump", "fact", "How often is the impeller seal replaced?", "every 2000 operating hours"),
    ("en-badge", "fact", "When do visitor badges expire?", "18:00"),
    ("en-expense", "reasoning", "Who must approve a 700 euro travel expense?", "a department head"),
    ("en-laser", "fact", "Which wavelength must the safety glasses be rated for?", "1064 nm"),
    ("en-backup", "fact", "How many daily snapshots do the nightly backups keep?", "14"),
    ("zh-sensor", "fact", "温度传感器的精度是多少？", "正负零点五度"),
    ("zh-sensor", "cross_lingual", "How often does the temperature sensor report a reading?", "每五秒"),
    ("zh-leave", "fact", "员工每年有多少天带薪年假？", "十五天"),
    ("zh-forklift", "fact", "仓库内叉车限速是多少？", "每小时八公里"),
    ("zh-canteen", "fact", "食堂午餐供应时间是什么时候？", "十一点半到一点半"),
    ("zh-firmware", "reasoning", "升级固件时为什么不能断电？", "升级过程中不得断电，否则升级无法完成"),
]


def manual_chunks() -> list[ChunkRecord]:
    return [ChunkRecord(cid, f"doc-{cid}", f"raw_data/{cid}.md", lang, text) for cid, lang, text in MANUAL]


def manual_pairs() -> list[QAPair]:
    return [QAPair(cid, qa_type, q, a) for cid, qa_type, q, a in MANUAL_PAIRS]


def generated_corpus(n_chunks: int, seed: int = 0, pairs_per_chunk: int = 3
                     ) -> tuple[list[ChunkRecord], list[QAPair], list[Paraphrase]]:
    """`n_chunks` distinct chunks of pseudo-words (every fifth one Chinese), each with facts to ask about.

    Each chunk states "<unit> <serial> is rated <n> volts" with a serial and a number of its own, so every
    question has exactly one answering chunk unless a test plants another.
    """
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ter", "van", "dus", "pre", "sol", "qua", "bex", "nor", "zi", "fal", "gru"]
    words = sorted({"".join(rng.choices(syllables, k=rng.randint(2, 3))) for _ in range(600)})
    hanzi = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    chunks, pairs, paraphrases = [], [], []
    for i in range(n_chunks):
        cid = f"c{i:04d}"
        serial = f"SN{i:04d}"
        volts = 100 + i
        if i % 5 == 4:
            filler = "".join(rng.choices(hanzi, k=120))
            text = f"{filler[:60]}。设备{serial}的额定电压为{volts}伏。{filler[60:]}。"
            lang = "zh"
            qas = [("fact", f"设备{serial}的额定电压是多少？", f"{volts}伏")]
        else:
            filler = rng.choices(words, k=70)
            text = (" ".join(filler[:35]) + f". Unit {serial} is rated {volts} volts. " + " ".join(filler[35:]) + ".")
            lang = "en"
            qas = [("fact", f"What voltage is unit {serial} rated for?", f"{volts} volts")]
        for j in range(1, pairs_per_chunk):
            word = filler[j] if lang == "en" else filler[j * 3:j * 3 + 2]
            qas.append(("reasoning", f"Which term appears as item {j} in the record of unit {serial}?", word))
        chunks.append(ChunkRecord(cid, f"doc-{i // 4}", f"raw_data/doc-{i // 4}.md", lang, text))
        pairs.extend(QAPair(cid, qa_type, q, a) for qa_type, q, a in qas[:pairs_per_chunk])
        paraphrases.append(Paraphrase(cid, f"In other words: unit {serial} takes {volts} volts."))
    return chunks, pairs, paraphrases
