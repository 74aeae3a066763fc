"""The AWS deployment: the Lambda image, the plan of AWS calls, and their execution."""
