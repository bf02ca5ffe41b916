"""VLMEvalKit's judge prompts, transcribed string for string (ms-vlmeval 0.0.20), typos included
("Model respone", "Your should output"), since the judge's replies depend on them.

Sources: ``vlmeval/dataset/utils/mathvista.py`` (``get_gpt4_ICE``, ``build_mathvista_gpt4_prompt``),
``utils/mathv.py`` (the same frame, MathVision's in-context examples), ``dataset/miabench.py``
(``generate_prompt``), ``utils/multiple_choice.py`` (``build_prompt``, ``build_prompt_cn``;
``smp/vlm.py: build_option_str``), ``utils/yorn.py`` (``YOrN_match_prompt``) and ``utils/mmdu.py``
(``meta_prompt`` and the frame ``mmdu_score`` puts around each turn).
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_EXTRACT_TASK = """
Please read the following example.
Then extract the answer from the model response and type it at the end of the prompt.\n
"""

MATHVISTA_EXAMPLES = (
    """
Hint: Please answer the question requiring an integer answer and provide the final value,
e.g., 1, 2, 3, at the end.\n
Question: Which number is missing?\n
Model response: The number missing in the sequence is 14.\n
Extracted answer: 14
""",
    """
Hint: Please answer the question requiring a floating-point number with one decimal place and provide the final value,
e.g., 1.2, 1.3, 1.4, at the end.\n
Question: What is the fraction of females facing the camera?\n
Model response: The fraction of females facing the camera is 0.6,
which means that six out of ten females in the group are facing the camera.\n
Extracted answer: 0.6
""",
    """
Hint: Please answer the question requiring a floating-point number with two decimal places and provide the final value,
e.g., 1.23, 1.34, 1.45, at the end.\n
Question: How much money does Luca need to buy a sour apple candy and a butter-scotch candy? (Unit: $)\n
Model response: Luca needs $1.45 to buy a sour apple candy and a butterscotch candy.\n
Extracted answer: 1.45
""",
    """
Hint: Please answer the question requiring a Python list as an answer and provide the final list,
e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.\n
Question: Between which two years does the line graph saw its maximum peak?\n
Model response: The line graph saw its maximum peak between 2007 and 2008.\n
Extracted answer: [2007, 2008]
""",
    """
Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n
Question: What fraction of the shape is blue?\n
Choices: (A) 3/11 (B) 8/11 (C) 6/11 (D) 3/5\n
Model response: The correct answer is (B) 8/11.\n
Extracted answer: B
""",
)

MATHVISION_EXAMPLES = (
    """
Hint: Please answer the question and provide the final answer at the end.\n
Question: Which number is missing?\n
Model response: The number missing in the sequence is 14.\n
Extracted answer: 14
""",
    """
Hint: Please answer the question and provide the final answer at the end.\n
Question: What is the fraction of females facing the camera?\n
Model response: The fraction of females facing the camera is 0.6,
which means that six out of ten females in the group are facing the camera.\n
Extracted answer: 0.6
""",
    """
Hint: Please answer the question and provide the final answer at the end.\n
Question: How much money does Luca need to buy a sour apple candy and a butter-scotch candy? (Unit: $)\n
Model response: Luca needs $1.45 to buy a sour apple candy and a butterscotch candy.\n
Extracted answer: 1.45
""",
    """
Hint: Please answer the question and provide the final answer at the end.\n
Question: Between which two years does the line graph saw its maximum peak?\n
Model response: The line graph saw its maximum peak between 2007 and 2008.\n
Extracted answer: [2007, 2008]
""",
    MATHVISTA_EXAMPLES[4],
)


def _extraction(examples: Sequence[str], question: Any, prediction: Any) -> str:
    prompt = _EXTRACT_TASK
    for example in examples:
        prompt += example + "\n"
    prompt += f"{question}\n"
    prompt += "Model respone: " + str(prediction)  # sic, and no newline before "Extracted answer:"
    return prompt + "Extracted answer:"


def mathvista_prompt(question: Any, prediction: Any) -> str:
    """``build_mathvista_gpt4_prompt``: five in-context examples, then the question and the response."""
    return _extraction(MATHVISTA_EXAMPLES, question, prediction)


def mathvision_prompt(question: Any, prediction: Any) -> str:
    """``build_mathv_gpt4_prompt``: MathVision's five in-context examples, the same frame."""
    return _extraction(MATHVISION_EXAMPLES, question, prediction)


_ORDINALS = ("first", "second", "third", "fourth", "fifth")


def miabench_prompt(question: Any, components: Sequence[Any], weights: Sequence[Any], n: int,
                    response: Any) -> str:
    """MIA-Bench's ``generate_prompt`` for an instruction of ``n`` (1 to 5) weighted components."""
    if not 1 <= n <= 5:
        raise ValueError(f"num_of_component must be 1 to 5 (VLMEvalKit's prompt), not {n}")
    if n == 1:
        parts = f"The first component is: '{components[0]}'. "
        score = f"The first component is worth: {weights[0]} scores. "
    elif n == 2:
        parts = f"The first component is: '{components[0]}', and the second component is '{components[1]}'. "
        score = f"The first and second component is each worth {weights[0]} and {weights[1]} scores. "
    else:
        parts = f"The first component is: '{components[0]}'" + "".join(
            f", and the {_ORDINALS[i]} component is '{components[i]}'" for i in range(1, n)) + ". "
        names = ", ".join(_ORDINALS[:n - 1]) + f", and {_ORDINALS[n - 1]}"
        worth = ", ".join(str(w) for w in weights[:n - 1]) + f", and {weights[n - 1]}"
        score = f"The {names} component is each worth {worth} scores."
    return ("Here is an instruction for a multimodal LLM: '"
            f"{question}"
            "'. You need to grade if the response from the model follows each component of the instruction. "
            f"{parts}"
            "The response is: '"
            f"{response}"
            "'. You need to score the response and be strict. The total score ranges from 0 to 10, "
            "depending on if the response follows the instruction. "
            f"{score}"
            "List scores of each component, and the total score in one sentence in this format: "
            "score of component 1: x/2, score of component 2: y/8, total score: z/10. Then explain your reasons.")


def option_str(choices: Mapping[str, Any]) -> str:
    """``build_option_str``."""
    return "There are several options: \n" + "".join(f"{c}. {v}\n" for c, v in choices.items())


_CHINESE = re.compile("[\u4e00-\u9fff]")

_MC_MATCH = (
    "You are an AI assistant who will help me to match "
    "an answer with several options of a single-choice question. "
    "You are provided with a question, several options, and an answer, "
    "and you need to find which option is most similar to the answer. "
    "If the meaning of all options are significantly different from the answer, output Z. "
    "Your should output a single uppercase character in A, B, C, D (if they are valid options), and Z. \n"
    "Example 1: \n"
    "Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
    "Answer: a cute teddy bear\nYour output: A\n"
    "Example 2: \n"
    "Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
    "Answer: Spider\nYour output: Z\n"
    "Example 3: \n"
    "Question: {}?\nOptions: {}\nAnswer: {}\nYour output: "
)

_MC_MATCH_CN = (
    "你是一个帮助我匹配答案与单选题中多个选项的 AI 助手。"
    "你会被提供：一个问题，多个选项，一个答案。你的任务是找到与答案意义最相近的选项。"
    "如果所有选项的意义都与答案显著不同，则输出 Z。"
    "你应该输出一个单个的大写字母，例如 A, B, C, D（如果它们是有效选项），或 Z。"
    "例 1:"
    "问题: 图中最主要的物体是什么?\n选项: A. 泰迪熊 B. 兔子 C. 猫 D. 狗\n答案: 一只可爱的泰迪熊\n输出: A\n"
    "例 2: \n"
    "问题: 图中最主要的物体是什么?\n选项: A. 泰迪熊 B. 兔子 C. 猫 D. 狗\n答案: 蜘蛛\n输出: Z\n"
    "例 3: \n"
    "问题: {}?\n选项: {}\n答案: {}\n输出: "
)


def mc_match_prompt(question: Any, choices: Mapping[str, Any], prediction: Any) -> str:
    """``build_prompt`` (``build_prompt_cn`` for a question with Chinese characters)."""
    template = _MC_MATCH_CN if _CHINESE.search(str(question)) else _MC_MATCH
    return template.format(question, option_str(choices), prediction)


_YES_NO_MATCH = (
    "You are an AI assistant who will help me to match an answer with two options of a question. "
    "The options are only Yes / No. "
    "You are provided with a question and an answer, "
    "and you need to find which option (Yes / No) is most similar to the answer. "
    "If the meaning of all options are significantly different from the answer, output Unknown. "
    "Your should output a single word among the following 3 choices: Yes, No, Unknown.\n"
    "Example 1: \n"
    "Question: Is the word in this image 'Hello'?\nAnswer: The word in this image is 'Hello'.\nYour output: Yes\n"
    "Example 2: \n"
    "Question: Is the word in this image 'Hello'?\n"
    "Answer: The word in this image is not 'Hello'.\nYour output: No\n"
    "Example 3: \n"
    "Question: {}?\nAnswer: {}\nYour output: "
)


def yes_no_match_prompt(question: Any, prediction: Any) -> str:
    """``YOrN_match_prompt``."""
    return _YES_NO_MATCH.format(question, prediction)


# MMDU: vlmeval/dataset/utils/mmdu.py, verbatim (the backslashes continue lines inside the string there too)
MMDU_META_PROMPT = """
You are an assistant skilled at evaluating the quality of creative text.
Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant to \
the user question displayed below. You'll need to assess the response on the following dimensions: \
Creativity, Richness, Visual Perception, Logical Coherence, Answer Accuracy and Image Relationship Understanding. \
We will provide you with a creative question and the AI model's response and a reference answer for your evaluation. \
As you begin your assessment, follow this process:
1. Evaluate the AI model's answers on different dimensions, pointing out its strengths or weaknesses \
in each dimension and assigning a score of 1 to 10 for each.
2. Finally, based on the assessments across dimensions, \
provide an overall score of 1 to 10 for the AI model's response.
3. Your scoring should be as stringent as possible and follow the scoring rules below:
In general, the higher the quality of the model's response and its strict adherence to user needs, \
the higher the score. Responses that do not meet user needs will receive lower scores.
Scoring rules:
Creativity:
Scores 1-2 when there is no innovation or uniqueness in the content.
Scores 3-4 when providing partially original content but with low creative quality.
Scores 5-6 when mostly creative but lacks significant novelty, with moderate quality.
Scores 7-8 when having novelty and high-quality content.
Scores 9-10 when highly novel and of exceptional quality compared to the reference answer.
Richness:
Scores 1-2 when lacking depth and breadth, with very limited information.
Scores 3-4 when limited in depth and breadth, with fewer explanations and examples, showing low diversity.
Scores 5-6 when limited in depth and breadth but provides basic necessary information.
Scores 7-8 when providing depth and useful additional information.
Scores 9-10 when providing exceptional depth, breadth, and high diversity compared to the reference answer.
Visual Perception:
Scores 1-2 when the description of the visual information in the image contains errors or \
is significantly inconsistent with the content of the image.
Scores 3-4 When the description of the visual information in the image reflects only a small amount \
of the image's information and contains some errors.
Scores 5-6 when the description of the visual information in the image includes the basic information \
of the image but contains minimal information.
Scores 7-8 when the description of the visual information in the image matches the image well and is rich in content, \
providing a substantial amount of information about the image.
Scores 9-10 when the description of the visual information in the image not only matches the image \
but also is more detailed and informative compared to the reference answer, providing more information about the image.
Logical Coherence:
Scores 1-2 when entirely incoherent, lacking any logic, and not matching the question or known information.
Scores 3-4 when somewhat coherent but with many logical errors or inconsistencies.
Scores 5-6 when mostly coherent, with few errors, but may struggle to maintain complete coherence in complex situations.
Scores 7-8 when excellent logical handling, very few errors.
Scores 9-10 when flawless logic, impeccable in handling complexity, \
and significantly higher logical coherence compared to the reference answer.
Answer Accuracy:
Scores 1-2 when the answer is significantly inconsistent with the question or contains obvious errors.
Scores 3-4 when the answer is partially correct but contains some errors or is incomplete.
Scores 5-6 when the answer is basically correct but lacks details or is not sufficiently detailed.
Scores 7-8 when the answer is accurate and detailed, fully corresponding to the question.
Scores 9-10 when the answer is not only accurate and detailed but also provides additional useful information, \
exceeding expectations.
Image Relationship Understanding:
Scores 1-2 when there are significant errors or confusion in distinguishing and describing different images, \
unable to correctly identify and relate the content of the images.
Scores 3-4 when the description of different images reflects only minimal distinguishing information, \
contains some errors and confusion, and fails to clearly differentiate and relate the images.
Scores 5-6 when the description of different images includes basic distinguishing information, \
is able to correctly identify and relate the images in a basic manner, \
but the information provided is minimal and lacks detail.
Scores 7-8 when the description of different images is accurate and detailed, \
clearly distinguishing and relating the images, \
with rich content that points out the main commonalities and differences between the images.
Scores 9-10 when the description of different images is not only accurate and detailed but also \
provides richer information and analysis, clearly distinguishing and relating the images, \
more comprehensively pointing out the commonalities and differences \
between the images compared to the reference answer.
Overall Score:
Scores 1-2 when irrelevant to the question, factually incorrect, or generates harmful content.
Scores 3-4 when no serious errors, mostly harmless, but of low quality and does not meet requirements.
Scores 5-6 when basically meeting requirements but performing poorly in some dimensions, with moderate quality.
Scores 7-8 when performing well in all dimensions.
Scores 9-10 when fully addressing user questions and all requirements, significantly surpassing the reference answer.
Please remember, you must evaluate and explain before scoring. After your explanation for each dimension, \
add the score for that dimension. Finally, at the end of your response, \
in the format of the dictionary (including brackets), return all your scoring results, \
ensuring your scores are integers:
{'Dimension One': Score, 'Dimension Two': Score, ..., 'Overall Score': Score}, \
for example: {'Creativity': 9, 'Richness': 6, ..., 'Overall Score': 7}.\n
"""
_MMDU_QUESTION = '[Question]'
_MMDU_REFERENCE_BEGIN = '[The Start of Reference Answer]'
_MMDU_REFERENCE_END = '[The End of Reference Answer]'
_MMDU_ANSWER_BEGIN = '[The Start of Assistant’s Answer]'
_MMDU_ANSWER_END = '[The End of Assistant’s Answer]'


def mmdu_prompt(question: str, reference: str, answer: str) -> str:
    """``mmdu_score``'s prompt for one turn: the rules, the turn's question, the reference answer and the
    model's answer."""
    return (MMDU_META_PROMPT + _MMDU_QUESTION + "\n" + question + "\n\n"
            + _MMDU_REFERENCE_BEGIN + "\n" + reference + "\n" + _MMDU_REFERENCE_END + "\n\n"
            + _MMDU_ANSWER_BEGIN + "\n" + answer + "\n" + _MMDU_ANSWER_END)
