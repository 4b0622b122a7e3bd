"""The Lambda runtime on this machine, without Docker: the real Runtime Interface Emulator and
awslambdaric running the image's handler, the events it takes, the chunk queue's delivery, and
API Gateway's REST proxy in front of it. infra/lambda_local.py and infra/lambda_http.py are the
command lines; the tests and the benchmark import these modules (infra/ is on their path).
"""
