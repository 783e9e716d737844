"""Operations: welcome, liveness, readiness and metrics."""
