"""Retrieval QA through llmserve: embeddings from the server, a FAISS index, answers by ChatOpenAI.

    llmserve serve &          # serves llmserve/tiny-chat and all-MiniLM-L6-v2
    python examples/retrieval_qa.py

Exits with status 1 if a question does not retrieve the document that answers it.
Environment: LLMSERVE_BASE_URL, LLMSERVE_MODEL, LLMSERVE_EMBEDDING_MODEL, LLMSERVE_API_KEY.
"""

from __future__ import annotations

import os
import sys
import warnings

from langchain_openai import ChatOpenAI, OpenAIEmbeddings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "`langchain-community` is being sunset", DeprecationWarning)
    from langchain_community.vectorstores import FAISS

BASE_URL = os.environ.get("LLMSERVE_BASE_URL", "http://127.0.0.1:8000/v1")
MODEL = os.environ.get("LLMSERVE_MODEL", "llmserve/tiny-chat")
EMBEDDING_MODEL = os.environ.get(
    "LLMSERVE_EMBEDDING_MODEL", "sentence-transformers/all-MiniLM-L6-v2"
)
API_KEY = os.environ.get("LLMSERVE_API_KEY", "llmserve")

DOCUMENTS = {
    "eiffel": "The Eiffel Tower in Paris was completed in 1889 and is 330 metres tall.",
    "photosynthesis": "Photosynthesis lets plants turn sunlight, water and carbon dioxide "
    "into glucose and oxygen.",
    "python": "Python is a programming language created by Guido van Rossum, first "
    "released in 1991.",
    "everest": "Mount Everest, on the border of Nepal and China, is the highest mountain "
    "on Earth at 8,849 metres.",
    "mitochondria": "Mitochondria are the organelles that produce most of a cell's energy as ATP.",
    "jupiter": "Jupiter is the largest planet of the Solar System, a gas giant with a "
    "Great Red Spot storm.",
}
QUESTIONS = {
    "How tall is the Eiffel Tower?": "eiffel",
    "How do plants make food from sunlight?": "photosynthesis",
    "Who created the Python programming language?": "python",
    "What is the highest mountain in the world?": "everest",
    "Which part of the cell produces energy?": "mitochondria",
    "What is the biggest planet orbiting the Sun?": "jupiter",
}


def main() -> int:
    # NOTE: check_embedding_ctx_length=False sends text; the default sends tiktoken token ids,
    # which mean nothing to another tokenizer (the server answers 400 and says so).
    embeddings = OpenAIEmbeddings(
        model=EMBEDDING_MODEL, base_url=BASE_URL, api_key=API_KEY, check_embedding_ctx_length=False
    )
    index = FAISS.from_texts(
        list(DOCUMENTS.values()), embeddings, metadatas=[{"id": k} for k in DOCUMENTS]
    )
    llm = ChatOpenAI(model=MODEL, base_url=BASE_URL, api_key=API_KEY, max_tokens=48)
    num_found = 0
    for question, expected in QUESTIONS.items():
        document = index.similarity_search(question, k=1)[0]
        is_found = document.metadata["id"] == expected
        num_found += is_found
        prompt = f"Answer from the context.\nContext: {document.page_content}\nQuestion: {question}"
        answer = llm.invoke(prompt).content
        verdict = "ok" if is_found else "WRONG"
        print(f"Q: {question}\n  retrieved: {document.metadata['id']} ({verdict})")
        print(f"  answer: {answer!r}")
    print(f"{num_found}/{len(QUESTIONS)} questions retrieved the right document")
    return 0 if num_found == len(QUESTIONS) else 1


if __name__ == "__main__":
    sys.exit(main())
