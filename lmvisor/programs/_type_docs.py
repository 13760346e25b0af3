"""DSPy 3.4.1's descriptions of its Audio, File and Reasoning types, as its prompts carry them.

DSPy's pydantic models put their class docstrings into their JSON schemas as `description`,
and those schemas reach the LM: in the "must adhere to the JSON schema" note of an output
field and in JSONAdapter's `response_format`. For requests to be byte-identical to DSPy's,
lmvisor's schemas of the same types carry the same text; it is wire data, kept verbatim.
"""

from __future__ import annotations

from typing import Final

__all__ = ["AUDIO_DESCRIPTION", "FILE_DESCRIPTION", "REASONING_DESCRIPTION"]

AUDIO_DESCRIPTION: Final = (
    "An audio input type for DSPy.\n"
    "\n"
    "Construct from in-memory values only: a data URI string, raw ``bytes`` (with\n"
    '``audio_format=``), a numpy-like array, a ``{"data", "audio_format"}`` dict, or another\n'
    "``Audio``. Raw base64 is passed as ``Audio(data=..., audio_format=...)``. Construction and\n"
    "adapter parsing never access the filesystem or network; use :meth:`from_path` to read a"
    " local\n"
    "file, :meth:`from_url` to download a remote resource, or :meth:`from_array` for array data."
)

FILE_DESCRIPTION: Final = (
    "A file input type for DSPy.\n"
    "See https://platform.openai.com/docs/api-reference/chat/create#chat_create-messages-"
    "user_message-content-array_of_content_parts-file_content_part-file for specification.\n"
    "\n"
    "The file_data field should be a data URI with the format:\n"
    "    data:<mime_type>;base64,<base64_encoded_data>\n"
    "\n"
    "Construct from in-memory values only: raw ``bytes``, a data URI string, a\n"
    '``{"file_data"|"file_id"|"filename"}`` dict, or another ``File``. Construction and adapter\n'
    "parsing never access the filesystem; use :meth:`from_path` to read a local file,\n"
    ":meth:`from_bytes` for raw bytes, or :meth:`from_file_id` to reference a preuploaded file.\n"
    "\n"
    "Examples:\n"
    "    ```python\n"
    "    import dspy\n"
    "\n"
    "    class QA(dspy.Signature):\n"
    "        file: dspy.File = dspy.InputField()\n"
    "        summary = dspy.OutputField()\n"
    "    program = dspy.Predict(QA)\n"
    '    result = program(file=dspy.File.from_path("./research.pdf"))\n'
    "    print(result.summary)\n"
    "    ```"
)

REASONING_DESCRIPTION: Final = (
    "Reasoning type in DSPy.\n"
    "\n"
    "This type is useful when you want the DSPy output to include the reasoning of the LM."
    " We build this type so that\n"
    "DSPy can support the reasoning model and non-reasoning model with the same code.\n"
    "\n"
    "This is a str-like type, you can convert a string directly to a Reasoning object, and"
    " from DSPy adapters'\n"
    "perspective, `Reasoning` is treated as a string."
)
