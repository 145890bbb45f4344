"""The official OpenAI and Anthropic Python SDKs against a running TokenRoute.

Run by tests/tests/sdk.rs, which starts TokenRoute in front of a fake provider
speaking OpenAI's, Anthropic's and Gemini's wire formats, and passes:
  TOKENROUTE_BASE  e.g. http://127.0.0.1:PORT
  TOKENROUTE_KEY   a key with credit
Each check runs against a model of each upstream dialect. Exits non-zero on the
first failure, with the reason.
"""

import json
import os
import sys

import anthropic
import openai

BASE = os.environ["TOKENROUTE_BASE"]
KEY = os.environ["TOKENROUTE_KEY"]
MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku", "gemini/gemini-2.0-flash"]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather now",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}

oa = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0)
an = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0)
checks = 0


def check(condition, message):
    global checks
    checks += 1
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


for model in MODELS:
    # Plain chat.
    r = oa.chat.completions.create(model=model, messages=QUESTION)
    check("Paris" in r.choices[0].message.content, f"{model}: chat content {r}")
    check(r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, f"{model}: usage {r.usage}")
    check(r.choices[0].finish_reason == "stop", f"{model}: finish_reason {r.choices[0].finish_reason}")

    # Streaming, with usage.
    text, usage = "", None
    for chunk in oa.chat.completions.create(
        model=model, messages=QUESTION, stream=True, stream_options={"include_usage": True}
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    check("Paris" in text, f"{model}: streamed text {text!r}")
    check(usage is not None and usage.completion_tokens > 0, f"{model}: streamed usage {usage}")

    # JSON mode is accepted and forwarded (the fake answers its fixture).
    r = oa.chat.completions.create(model=model, messages=QUESTION, response_format={"type": "json_object"})
    check(r.choices[0].message.content, f"{model}: json mode answer")

    # Anthropic SDK, whole and streamed, to the same model.
    m = an.messages.create(model=model, max_tokens=128, messages=QUESTION)
    check(m.type == "message" and "Paris" in m.content[0].text, f"{model}: anthropic sdk {m}")
    check(m.usage.output_tokens > 0, f"{model}: anthropic usage {m.usage}")
    with an.messages.stream(model=model, max_tokens=128, messages=QUESTION) as s:
        streamed = "".join(s.text_stream)
        final = s.get_final_message()
    check("Paris" in streamed, f"{model}: anthropic stream text {streamed!r}")
    check(final.stop_reason == "end_turn", f"{model}: anthropic stream stop {final.stop_reason}")

# Tool calls, whole, from every dialect: the call and its arguments come back intact.
for model in MODELS:
    r = oa.chat.completions.create(model=model, messages=QUESTION, tools=[WEATHER_TOOL])
    calls = r.choices[0].message.tool_calls or []
    check(calls and calls[0].function.name == "get_weather", f"{model}: a tool call {r}")
    check(json.loads(calls[0].function.arguments) == {"location": "Paris, France"}, f"{model}: arguments {calls}")
    check(r.choices[0].finish_reason == "tool_calls", f"{model}: finish_reason {r.choices[0].finish_reason}")
    m = an.messages.create(
        model=model, max_tokens=128, messages=QUESTION,
        tools=[{"name": "get_weather", "description": "The weather now",
                "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}],
    )
    uses = [b for b in m.content if b.type == "tool_use"]
    check(uses and uses[0].input == {"location": "Paris, France"}, f"{model}: anthropic sdk tool use {m.content}")
    check(m.stop_reason == "tool_use", f"{model}: anthropic sdk stop {m.stop_reason}")

# Tool calls, streamed, from the dialects whose fixtures carry one.
for model in ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"]:
    calls = {}
    for chunk in oa.chat.completions.create(model=model, messages=QUESTION, tools=[WEATHER_TOOL], stream=True):
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = calls.setdefault(call.index, {"name": None, "arguments": ""})
            if call.function and call.function.name:
                entry["name"] = call.function.name
            if call.function and call.function.arguments:
                entry["arguments"] += call.function.arguments
    check(calls and calls[0]["name"], f"{model}: a streamed tool call {calls}")
    check(isinstance(json.loads(calls[0]["arguments"]), dict), f"{model}: tool arguments {calls}")

with an.messages.stream(
    model="anthropic/claude-3-5-haiku",
    max_tokens=256,
    messages=QUESTION,
    tools=[{"name": "get_weather", "description": "The weather now",
            "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}],
) as s:
    final = s.get_final_message()
tool_uses = [b for b in final.content if b.type == "tool_use"]
check(tool_uses and tool_uses[0].input == {"location": "Paris, France"}, f"anthropic sdk tool use {final.content}")
check(final.stop_reason == "tool_use", f"anthropic sdk tool stop {final.stop_reason}")

# Embeddings, from an OpenAI-compatible and a Gemini upstream.
for model in ["openai/text-embedding-3-small", "gemini/text-embedding-004"]:
    e = oa.embeddings.create(model=model, input=["hello", "world"] if "gemini" in model else "hello")
    check(len(e.data) >= 1 and len(e.data[0].embedding) > 0, f"{model}: embeddings {e}")
    check(e.usage.prompt_tokens > 0, f"{model}: embeddings usage {e.usage}")

# Errors, as each SDK's own exception types.
try:
    openai.OpenAI(base_url=f"{BASE}/v1", api_key="tr-wrong", max_retries=0).chat.completions.create(
        model=MODELS[0], messages=QUESTION
    )
    check(False, "openai sdk: a bad key must fail")
except openai.AuthenticationError:
    check(True, "")
try:
    oa.chat.completions.create(model="nobody/nothing", messages=QUESTION)
    check(False, "openai sdk: an unknown model must fail")
except openai.BadRequestError as e:
    check("nobody/nothing" in str(e), f"openai sdk: unknown model message {e}")
try:
    anthropic.Anthropic(base_url=BASE, api_key="tr-wrong", max_retries=0).messages.create(
        model=MODELS[0], max_tokens=10, messages=QUESTION
    )
    check(False, "anthropic sdk: a bad key must fail")
except anthropic.AuthenticationError:
    check(True, "")

# A provider of each dialect that cannot be reached: 502 in each SDK's own error type,
# naming the provider.
for provider in ["dead", "dead-anthropic", "dead-gemini"]:
    try:
        oa.chat.completions.create(model=f"{provider}/model", messages=QUESTION)
        check(False, f"openai sdk: {provider} must fail")
    except openai.InternalServerError as e:
        check(e.status_code == 502 and provider in str(e), f"openai sdk: {provider}: {e}")
    try:
        an.messages.create(model=f"{provider}/model", max_tokens=10, messages=QUESTION)
        check(False, f"anthropic sdk: {provider} must fail")
    except anthropic.InternalServerError as e:
        check(e.status_code == 502 and provider in str(e), f"anthropic sdk: {provider}: {e}")

print(f"{checks} SDK checks passed")
