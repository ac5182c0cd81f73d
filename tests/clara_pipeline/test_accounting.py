"""What did not make it into a run, and the exit status that follows."""

from clara_pipeline.accounting import ExitStatus, RunAccount, failure_lines, plural


def test_exit_statuses_are_distinct_and_stable():
    assert [int(s) for s in (ExitStatus.OK, ExitStatus.FAILED, ExitStatus.USAGE, ExitStatus.INCOMPLETE)] == [0, 1, 2, 3]


def test_a_run_with_nothing_left_out_is_ok_and_says_nothing():
    account = RunAccount()
    account.dropped["QA pairs: duplicate question"] += 2  # the filters at work: not a loss
    assert account.status() is ExitStatus.OK
    assert account.summary() == ["dropped on the way (curation and dataset rules; the counts are in the asset "
                                 "metadata): QA pairs: duplicate question 2"]


def test_every_kind_of_loss_is_counted_with_its_first_reasons():
    account = RunAccount()
    account.failed_documents.add(1, ["broken_pdf-0123: not a readable PDF"])
    account.uncaptioned_figures.add(1, ["guide_pdf-aaaa: figure 2 (page 3): caption (m): no valid answer"])
    account.parked_figures += 1
    account.chunks_without_pairs.add(5, [f"notes.md, chunk {i} (abcd): too little text" for i in range(5)])
    assert account.status() is ExitStatus.INCOMPLETE
    text = "\n".join(account.summary())
    assert "  1 document failed to ingest\n      broken_pdf-0123: not a readable PDF" in text
    assert "  1 figure without a caption (a placeholder stands in the training text, 1 of them parked)" in text
    assert "  5 chunks without QA pairs (left out of the datasets)" in text
    assert "chunk 2 (abcd)" in text and "chunk 3 (abcd)" not in text and "... and 2 more" in text
    assert "1 item parked" in text and "clara run --retry-failed" in text


def test_plain_counts_and_failure_lines():
    assert (plural(1, "figure"), plural(2, "figure"), plural(0, "entry", "entries")) == ("1 figure", "2 figures", "0 entries")
    failures = [{"key": f"k{i}", "message": f"m{i}"} for i in range(9)]
    assert failure_lines(failures, str.upper, limit=2) == ["K0: m0", "K1: m1"]


def test_failure_kinds_read_as_words_not_as_a_dict():
    from clara_pipeline.accounting import kinds_in_words

    assert kinds_in_words({"timeout": 1, "invalid_output": 2}) == "invalid output 2, timeout 1"
    assert kinds_in_words({}) == "none"
