//! `netstat_counters`: the SNMP MIB counters of each namespace
//! (`--counters`), one row per namespace, left out when none was selected
//! or found. The counters' names, HELP and native families come from
//! [`crate::counters`], which reads them.

use super::{Emit, Measurement, Shape};
use crate::aggregate::Gathered;
use crate::counters;
use crate::metric::{Field, Native, Schema};

pub static MEASUREMENT: Measurement = Measurement {
    schemas: &[&SCHEMA],
    rows,
};

pub static SCHEMA: Schema = Schema {
    name: "netstat_counters",
    help: counters::help,
    native: |field| {
        counters::native(field).map(|(name, help, family)| Native {
            name,
            help,
            counter: true,
            label: family.map(|f| ("family", f)),
        })
    },
    native_only: false,
};

fn rows(shape: &Shape, g: &Gathered<'_>, emit: &mut Emit<'_>) {
    let Some(c) = g
        .counters
        .filter(|c| shape.print.counters && !c.values().is_empty())
    else {
        return;
    };
    let fields: Vec<Field> = c
        .values()
        .iter()
        .map(|&(name, value)| Field::counter(name, value))
        .collect();
    emit(&SCHEMA, &[], &fields);
}
