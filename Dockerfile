# parity-verifier sidecar: a slim image running `parity-verifier run` as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY verifier ./verifier
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/parity --create-home parity
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
WORKDIR /var/lib/parity
VOLUME ["/var/lib/parity"]
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2)" || exit 1
ENTRYPOINT ["parity-verifier"]
CMD ["run", "-c", "/etc/parity/config.yaml"]
