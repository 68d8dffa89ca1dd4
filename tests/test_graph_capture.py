"""The layer graph: nodes, attributes and edges on models whose right answer is known."""

from __future__ import annotations

import os

import networkx as nx
import pytest
import torch
from torch import nn

import topoprof
from fixtures.models import MLP, DataDependent, LoopedCell, ResidualCNN


def profile_graph(tmp_path, model, make_input, steps=2, loss=lambda out: out.sum(), **kwargs):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with topoprof.profile(model, tmp_path / "run", steps=steps, skip_first=1, tensorboard=False) as prof:
        for _ in range(steps + 1):
            out = model(**make_input()) if kwargs.get("as_kwargs") else model(make_input())
            loss(out).backward()
            opt.step()
            opt.zero_grad()
            prof.step()
    return prof.run.graph()


def edges(g):
    return {(a, b) for a, b in g.edges()}


def test_residual_cnn_skip_connection_is_an_edge(tmp_path):
    g = profile_graph(tmp_path, ResidualCNN(), lambda: torch.randn(2, 3, 8, 8))
    assert edges(g) == {
        ("input", "stem"),
        ("stem", "block.conv1"),
        ("block.conv1", "block.relu"),
        ("block.relu", "block.conv2"),
        ("block.conv2", "head"),
        ("stem", "head"),  # the skip connection, through the residual add
        ("head", "output"),
    }
    skip = g.edges["stem", "head"]
    assert skip["via"] == ["add", "mean"]
    assert skip["shape"] == [2, 4] and skip["dtype"] == "float32" and skip["bytes"] == 2 * 4 * 4
    assert g.edges["stem", "block.conv1"]["shape"] == [2, 4, 8, 8]
    assert g.edges["stem", "block.conv1"]["bytes"] == 2 * 4 * 8 * 8 * 4


def test_node_attributes_of_a_linear_stack(tmp_path):
    g = profile_graph(tmp_path, MLP(width=8, depth=3), lambda: torch.randn(4, 8))
    first = g.nodes["body.0"]
    assert first["kind"] == "Linear" and first["leaf"] and first["parent"] == "body"
    assert first["params"] == 8 * 8 + 8 and first["param_bytes"] == (8 * 8 + 8) * 4
    assert first["in_shapes"] == [[4, 8]] and first["out_shapes"] == [[4, 8]]
    assert first["dtype"] == "float32"
    assert first["flops_fwd"] == 2 * 4 * 8 * 8
    assert first["flops_bwd"] == 2 * 4 * 8 * 8  # weight gradient only: the input needs no grad
    assert g.nodes["body.2"]["flops_bwd"] == 2 * (2 * 4 * 8 * 8)  # weight and input gradients
    assert first["act_bytes"] == 4 * 8 * 4
    assert first["calls"] == 1 and first["fwd_us"] > 0 and first["bwd_us"] > 0
    body = g.nodes["body"]
    assert body["kind"] == "Sequential" and not body["leaf"] and body["parent"] == ""
    assert body["params"] == 3 * (8 * 8 + 8)
    assert body["flops_fwd"] == 3 * 2 * 4 * 8 * 8  # containers include their children
    root = g.nodes[""]
    assert root["kind"] == "MLP" and root["parent"] is None
    assert root["params"] == sum(p.numel() for p in MLP(width=8, depth=3).parameters())
    # containers are hierarchy, not data flow
    assert g.in_degree("body") == 0 and g.out_degree("body") == 0
    chain = ["input", "body.0", "body.1", "body.2", "body.3", "body.4", "body.5", "head", "output"]
    assert edges(g) == set(zip(chain, chain[1:]))
    assert nx.is_directed_acyclic_graph(g)


def test_data_dependent_control_flow_that_fx_cannot_trace(tmp_path):
    with pytest.raises(Exception):
        torch.fx.symbolic_trace(DataDependent())
    g = profile_graph(tmp_path, DataDependent(), lambda: torch.ones(2, 4))
    assert "neg" not in g  # never called: not a node
    assert edges(g) == {("input", "pos"), ("pos", "out"), ("out", "output")}


def test_module_called_in_a_loop_is_one_node_with_a_self_loop(tmp_path):
    g = profile_graph(tmp_path, LoopedCell(steps=3), lambda: torch.randn(2, 3, 4))
    assert g.nodes["cell"]["calls"] == 3
    assert g.edges["cell", "cell"]["count"] == 2  # h flows from call t to call t+1
    assert g.edges["input", "cell"]["count"] == 3 and g.edges["input", "cell"]["via"] == ["__getitem__"]
    assert ("cell", "head") in g.edges and ("head", "output") in g.edges
    assert g.nodes["cell"]["act_bytes"] == 3 * 2 * 4 * 4


def test_shared_weights_across_two_call_sites(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)
            self.mid = nn.ReLU()

        def forward(self, x):
            return self.proj(self.mid(self.proj(x)))

    g = profile_graph(tmp_path, Tied(), lambda: torch.randn(2, 4))
    assert g.nodes["proj"]["calls"] == 2
    assert edges(g) == {("input", "proj"), ("proj", "mid"), ("mid", "proj"), ("proj", "output")}
    assert g.nodes["proj"]["flops_fwd"] == 2 * (2 * 2 * 4 * 4)


def test_input_and_output_node_names_avoid_module_names(tmp_path):
    class Named(nn.Module):
        def __init__(self):
            super().__init__()
            self.input = nn.Linear(4, 4)
            self.output = nn.Linear(4, 4)

        def forward(self, x):
            return self.output(self.input(x))

    g = profile_graph(tmp_path, Named(), lambda: torch.randn(2, 4))
    assert g.graph["input_node"] == "<input>" and g.graph["output_node"] == "<output>"
    assert edges(g) == {("<input>", "input"), ("input", "output"), ("output", "<output>")}


transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=False)
def hf_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_bert_attention_and_residual_edges(tmp_path, hf_offline):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=128, num_labels=3,
    )
    model = BertForSequenceClassification(config)
    ids = torch.randint(0, 1000, (4, 32))
    labels = torch.randint(0, 3, (4,))
    g = profile_graph(tmp_path, model, lambda: {"input_ids": ids, "labels": labels}, loss=lambda o: o.loss, as_kwargs=True)
    p = "bert.encoder.layer.0."
    for proj in ("query", "key", "value"):
        via = g.edges[p + f"attention.self.{proj}", p + "attention.output.dense"]["via"]
        assert "scaled_dot_product_attention" in via or "matmul" in via
        assert g.nodes[p + f"attention.self.{proj}"]["flops_fwd"] == 2 * 4 * 32 * 64 * 64
    # residual around attention: the block's input is added to the attention output
    assert g.edges["bert.embeddings.dropout", p + "attention.output.LayerNorm"]["via"] == ["add"]
    assert ("input", "bert.embeddings.word_embeddings") in g.edges
    assert ("classifier", "output") in g.edges
    assert g.nodes[p + "attention.self"]["parent"] == p + "attention"
    assert g.nodes[p + "attention"]["flops_fwd"] > g.nodes[p + "attention.self.query"]["flops_fwd"] * 3


def test_gpt2_pre_norm_residual_stream_links_to_the_last_writer(tmp_path, hf_offline):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=1000, n_positions=128, n_embd=64, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config)
    ids = torch.randint(0, 1000, (4, 32))
    g = profile_graph(tmp_path, model, lambda: {"input_ids": ids, "labels": ids}, loss=lambda o: o.loss, as_kwargs=True)
    h0, h1 = "transformer.h.0.", "transformer.h.1."
    assert (h0 + "attn.c_attn", h0 + "attn.c_proj") in g.edges
    assert g.edges["transformer.drop", h0 + "ln_2"]["via"] == ["add"]
    assert g.edges[h0 + "mlp.dropout", h1 + "ln_2"]["via"] == ["add"]  # the skip around h.1's attention
    # bounded fan-in: no edge from the embedding dropout past the first block
    assert not any(a == "transformer.drop" and b.startswith(h1) for a, b in g.edges)
    assert g.nodes["lm_head"]["flops_fwd"] == 2 * 4 * 32 * 64 * 1000


def test_host_syncs_are_recorded_with_site_and_phase(tmp_path):
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 1)

        def forward(self, x):
            h = self.a(x)
            if h.sum() > 0:  # a Python condition on a tensor: Tensor.__bool__ syncs
                h = h * 2
            return self.b(h)

    model = Branchy()
    opt = torch.optim.Adam(model.parameters(), foreach=False)  # reads its step counters with .item()
    with topoprof.profile(model, tmp_path / "r", steps=1, skip_first=1, tensorboard=False) as prof:
        for _ in range(2):
            loss = model(torch.ones(2, 4)).sum()
            loss.backward()
            loss.item()  # the training loop's own sync
            opt.step()
            opt.zero_grad()
            prof.step()
    syncs = {(s["op"], s["where"], s["phase"]): s["count"] for s in prof.run.rank().host_syncs}
    assert syncs == {
        ("__bool__", "", "forward"): 1,
        ("item", "<outside model>", "other"): 1,
        ("item", "<outside model>", "optimizer"): 4,  # one per parameter tensor
    }


def test_containers_never_called_keep_the_hierarchy_consistent(tmp_path):
    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])
            self.head = nn.Linear(8, 1)

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return self.head(x)

    g = profile_graph(tmp_path, Stack(), lambda: torch.randn(4, 8))
    layers = g.nodes["layers"]
    assert layers["kind"] == "ModuleList" and layers["calls"] == 0 and g.nodes["layers.0"]["parent"] == "layers"
    assert layers["flops_fwd"] == 3 * 2 * 4 * 8 * 8  # the sum of its children, not 0 and not twice
    assert layers["params"] == 3 * (8 * 8 + 8)
    assert g.nodes[""]["flops_fwd"] == layers["flops_fwd"] + g.nodes["head"]["flops_fwd"]
    kids = sum(g.nodes[f"layers.{i}"]["fwd_us"] for i in range(3))
    assert layers["fwd_us"] == pytest.approx(kids, rel=0.35)  # medians of sums vs sums of medians
    assert layers["self_fwd_us"] == 0


def test_every_producer_of_an_attention_reaches_the_output_projection(tmp_path):
    class Attention(nn.Module):  # eager attention as in BERT/Llama: (q @ k^T).softmax() @ v
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(8, 8) for _ in range(4))

        def forward(self, x):
            scores = (self.q(x) @ self.k(x).transpose(-1, -2)).softmax(-1)
            return self.o(scores @ self.v(x))

    g = profile_graph(tmp_path, Attention(), lambda: torch.randn(2, 5, 8))
    assert edges(g) == {
        ("input", "q"), ("input", "k"), ("input", "v"),
        ("q", "o"), ("k", "o"), ("v", "o"), ("o", "output"),
    }
    assert g.edges["q", "o"]["via"] == ["matmul", "softmax", "matmul"]


def test_flops_are_attributed_by_module_identity_and_autograd_ownership(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(16, 16)
            self.fc2 = nn.Linear(16, 4)

        def forward(self, x):
            return self.fc2(self.fc1(x).relu())

    model, teacher = Net(), Net()  # a teacher of the same class also runs every step
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with topoprof.profile(model, tmp_path / "r", steps=1, skip_first=1, tensorboard=False) as prof:
        for _ in range(2):
            x = torch.randn(8, 16)
            with torch.no_grad():
                target = teacher(x)
                model(x)  # an extra no-grad pass first: the FLOPs are those of the training pass
            ((model(x) - target) ** 2).mean().backward()
            opt.step()
            opt.zero_grad()
            prof.step()
    g = prof.run.graph()
    assert g.nodes["fc1"]["flops_fwd"] == 2 * 8 * 16 * 16  # not doubled by the teacher's fc1
    assert g.nodes["fc1"]["flops_bwd"] == 2 * 8 * 16 * 16  # weight gradient only (x needs none)
    assert g.nodes["fc2"]["flops_bwd"] == 2 * (2 * 8 * 16 * 4)  # weight and input gradients
    assert g.nodes[""]["flops_bwd"] == g.nodes["fc1"]["flops_bwd"] + g.nodes["fc2"]["flops_bwd"]


def test_gradient_penalty_with_autograd_grad_on_leaf_inputs_still_trains(tmp_path):
    # WGAN-GP: torch.autograd.grad w.r.t. a leaf input inside the step. FlopCounterMode's
    # module tracker makes that raise; topoprof's capture must not.
    critic = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(critic.parameters(), lr=0.01)
    with topoprof.profile(critic, tmp_path / "r", steps=1, skip_first=1, tensorboard=False) as prof:
        for _ in range(2):
            x = torch.randn(8, 4, requires_grad=True)
            out = critic(x)
            (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
            (out.mean() + ((grad.norm(dim=1) - 1) ** 2).mean()).backward()
            opt.step()
            opt.zero_grad()
            prof.step()
    assert len(prof.run.rank().steps) == 1
