"""Demo tasks that `reprise dev` loads by default."""
