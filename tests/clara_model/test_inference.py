import pytest
import torch
import torch.nn.functional as F

from clara_model import Stage, answer, answer_with_retrieval, compress, paraphrase
from clara_model.adapters import active_adapters, use_adapter
from clara_model.collate import InstructCollator, encode_documents
from clara_model.config import Adapter
from clara_model.data import QuestionRow
from tests.clara_model.conftest import build_model, fit, perturb_adapters

FACTS = [
    QuestionRow("What is the capital of France?", ("Paris is the capital of France.",), "Paris", ("Paris",)),
    QuestionRow("Who edits Thrasher?", ("Jake Phelps edits Thrasher magazine.",), "Jake Phelps", ("Jake Phelps",)),
]


@pytest.fixture(scope="module")
def e2e_model():
    torch.manual_seed(0)
    model = build_model(Stage.E2E, generation_top_k=2)
    perturb_adapters(model, scale=0.2)
    return model


def test_a_trained_decoder_answers_through_the_inference_api():
    """Training and inference build the same layout: after fitting two facts, greedy answers reproduce them."""
    model = fit(build_model(Stage.INSTRUCT), FACTS, steps=30)
    answers = answer(model, [r.question for r in FACTS], [list(r.docs) for r in FACTS], max_new_tokens=8)
    assert answers == ["Paris", "Jake Phelps"]
    assert model.training and active_adapters(model.base) == ()  # left as it was found


def test_generation_is_greedy_and_matches_the_training_forward(e2e_model):
    model = e2e_model
    questions, docs = ["What is Flip?"], [["Flip makes skateboards.", "Saari rode for Flip."]]
    first = answer(model, questions, docs, max_new_tokens=6)
    assert answer(model, questions, docs, max_new_tokens=6) == first  # deterministic
    # The first generated token is the argmax of the training-path logits at the end of the prompt.
    row = QuestionRow(questions[0], tuple(docs[0]), "x", ("x",))
    batch = InstructCollator(model.tokenizer, model.tokens, doc_max_length=32, max_len=160)([row])
    prompt_len = int((batch.labels[0] == -100).sum())
    ids, mask = batch.dec_ids[:, :prompt_len], batch.dec_mask[:, :prompt_len]
    model.eval()
    with torch.no_grad():
        memory = model.compress(batch.doc_ids, batch.doc_mask, Adapter.ENCODER).memory
        with use_adapter(model.base, Adapter.DECODER):
            states = model.hidden_states(model.decoder_inputs(ids, memory, batch.docs_per_row), mask)
        logits = model.base.get_output_embeddings()(states[:, -1])
    logits[:, list(model.tokens.new_ids)] = float("-inf")
    expected = model.tokenizer.decode(logits.argmax(-1)).strip()
    assert expected and first[0].startswith(expected), (first, expected)


def test_answer_with_retrieval_uses_the_query_reasoners_top_k(e2e_model):
    model = e2e_model
    questions = ["Who edits Thrasher?", "Where is the office?"]
    candidates = [["Jake Phelps edits Thrasher.", "Flip is a company.", "Fox met Geoff.", "Saari rode."],
                  ["In San Francisco.", "Arto Saari.", "2012."]]  # N may differ per question
    result = answer_with_retrieval(model, questions, candidates, max_new_tokens=4)
    model.eval()
    with torch.no_grad():
        q_ids, q_mask = encode_documents(model.tokenizer, model.tokens, questions, 32)
        query = model.compress(q_ids, q_mask, Adapter.QUERY_REASONER).memory.flatten(1)
        for b, docs in enumerate(candidates):
            vectors = compress(model, docs).flatten(1)
            cosines = F.cosine_similarity(query[b].unsqueeze(0), vectors, dim=-1)
            assert result.selected[b] == cosines.topk(2).indices.tolist()
    assert len(result.answers) == 2 and all(isinstance(a, str) for a in result.answers)
    with pytest.raises(ValueError, match="at least k=3"):
        answer_with_retrieval(model, questions, [candidates[0], candidates[1][:2]], k=3)


def test_compress_and_paraphrase(e2e_model):
    model = e2e_model
    memory = compress(model, ["A short document.", "Another, slightly longer, document about skateboards."])
    assert memory.shape == (2, model.tokens.n_mem, model.base.config.hidden_size)
    out = paraphrase(model, ["A short document."], max_new_tokens=5)
    assert out == paraphrase(model, ["A short document."], max_new_tokens=5) and isinstance(out[0], str)


def test_inputs_are_checked(e2e_model):
    with pytest.raises(ValueError, match="2 questions but 1 document lists"):
        answer(e2e_model, ["a", "b"], [["d"]])
    with pytest.raises(ValueError, match="at least one document"):
        answer(e2e_model, ["a"], [[]])
