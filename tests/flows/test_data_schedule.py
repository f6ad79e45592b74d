"""`fineforge data schedule`: mistakes are one line before anything is registered. A schedule that fires and a run
that completes, against the real services, are in test_deployments.py."""

from typer.testing import CliRunner

from fineforge.flows.cli import app

WARC = "cc-main-2024-22-one-page.warc.gz"
runner = CliRunner()


def schedule(*args: str):
    return runner.invoke(app, ["data", "schedule", *args])


def test_schedule_without_a_server_is_a_clear_error(shared_data):
    result = schedule("--cron", "0 3 * * *", "--input", str(shared_data / "warc" / WARC))
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "PREFECT_API_URL is not set" in result.output and "fineforge server start" in result.output


def test_schedule_rejects_a_bad_cron_or_time_zone_in_one_line(shared_data):
    warc = str(shared_data / "warc" / WARC)
    for option, value, reason in (("--cron", "every day", "Invalid cron string"),
                                  ("--timezone", "Mars/Olympus", "Invalid timezone")):
        options = {"--cron": "0 3 * * *", "--timezone": "UTC", option: value}
        result = schedule("--input", warc, *[item for pair in options.items() for item in pair])
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert result.output.startswith(f"error: {option}: {reason}")
